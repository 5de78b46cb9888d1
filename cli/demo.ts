// `wan demo` / `npm run demo`: a short video from a tiny built-in checkpoint (synthetic weights made
// deterministically at first run and cached), through the real ti2v-5B pipeline and MP4 writer.
// The weights are random, so the video is noise-like: it proves the whole path works on this
// machine without any download. Real checkpoints: see the README.
import { ensureDemoCheckpoint } from '../model/demo/checkpoint.ts';
import { generateCommand } from './generate.ts';

export const DEMO_ARGS = ['--task', 'ti2v-5B', '--size', '128*128', '--frame_num', '9', '--sample_steps', '4', '--base_seed', '42'];

export async function demoCommand(argv: string[]): Promise<number> {
  const out = argv.find((a) => !a.startsWith('-')) ?? 'wan-demo.mp4';
  console.log('wan demo: tiny synthetic ti2v-5B checkpoint (random weights: the video is noise-like, not a real generation)');
  const dir = await ensureDemoCheckpoint('ti2v-5B');
  console.log(`checkpoint: ${dir}`);
  return generateCommand([
    ...DEMO_ARGS,
    '--ckpt_dir',
    dir,
    '--prompt',
    'A small red fox runs across a snowy field.',
    '--save_file',
    out,
    ...argv.filter((a) => a !== out),
  ]);
}
