// `npm run bench -- pipeline`: placeholder until this benchmark lands.
export async function command(_argv: string[]): Promise<number> {
  console.error('bench pipeline: not implemented yet');
  return 2;
}
