// `npm run bench -- scale`: placeholder until this benchmark lands.
export async function command(_argv: string[]): Promise<number> {
  console.error('bench scale: not implemented yet');
  return 2;
}
