// `wan demo` / `npm run demo`: until the video pipelines land, the demo is the engine self-check:
// it runs every bundled reference fixture and shows the adapter it ran on.
import { fileURLToPath } from 'node:url';
import { loadFixture } from '../loaders/fixture.ts';
import { expandFixtureDirs, fixtureKind } from '../model/reference/index.ts';
import { infoCommand } from './info.ts';
import { verifyCommand } from './verify.ts';

export async function demoCommand(argv: string[]): Promise<number> {
  console.log('wan demo: the video pipelines are not built yet; running the engine self-check instead.\n');
  await infoCommand(['--device', ...argv]);
  console.log('');
  const all = expandFixtureDirs([fileURLToPath(new URL('../test/fixtures/', import.meta.url))]);
  const runnable: string[] = [];
  for (const d of all) if (fixtureKind((await loadFixture(d)).kind)) runnable.push(d);
  if (runnable.length < all.length) console.log(`(${all.length - runnable.length} bundled fixtures are of kinds not implemented yet)\n`);
  return verifyCommand([...runnable, ...argv]);
}
