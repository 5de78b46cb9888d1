// `npm run bench -- dit`: placeholder until this benchmark lands.
export async function command(_argv: string[]): Promise<number> {
  console.error('bench dit: not implemented yet');
  return 2;
}
