// `npm run bench -- load`: placeholder until this benchmark lands.
export async function command(_argv: string[]): Promise<number> {
  console.error('bench load: not implemented yet');
  return 2;
}
