// `npm run bench -- vae`: placeholder until this benchmark lands.
export async function command(_argv: string[]): Promise<number> {
  console.error('bench vae: not implemented yet');
  return 2;
}
