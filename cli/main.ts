// `wan`: command-line entry. Subcommands live in their own modules.
import { infoCommand } from './info.ts';
import { verifyCommand } from './verify.ts';
import { demoCommand } from './demo.ts';
import { generateCommand } from './generate.ts';
import { convertCommand } from './convert.ts';

const usage = `usage: wan <command> [options]

commands:
  generate  generate a video from a checkpoint folder (flags as the official generate.py)
  demo      run the built-in demo
  verify    compare the engine with PyTorch reference fixtures
  info      describe the WebGPU adapter (--device)
  convert   copy an official checkpoint folder with its DiT weights stored as bf16

wan <command> --help shows each command's options.`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'verify':
      return verifyCommand(rest);
    case 'info':
      return infoCommand(rest);
    case 'generate':
      return generateCommand(rest);
    case 'demo':
      return demoCommand(rest);
    case 'convert':
      return convertCommand(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(usage);
      return cmd === undefined ? 2 : 0;
    default:
      console.error(`wan: unknown command "${cmd}"\n\n${usage}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error) => {
    console.error(`wan: ${err.message}`);
    if (process.env.WAN_DEBUG) console.error(err.stack);
    process.exitCode = 1;
  },
);
