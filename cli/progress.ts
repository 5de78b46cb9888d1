// Progress display: one bar per stage on a terminal (redrawn in place), plain lines otherwise
// (logs, CI), so long runs always show where they are.
import type { Stage } from '../model/pipelines/generate.ts';

const LABELS: Record<Stage, string> = {
  load: 'loading weights',
  text: 'text encoding',
  encode: 'image encoding',
  denoise: 'denoising',
  decode: 'VAE decoding',
};

export class Progress {
  private current: Stage | null = null;
  private started = 0;
  private lastPlain = 0;
  constructor(
    private out: NodeJS.WriteStream = process.stderr,
    private tty = Boolean(process.stderr.isTTY),
  ) {}

  update(stage: Stage, done: number, total: number, info = ''): void {
    const now = performance.now();
    if (stage !== this.current) {
      if (this.current && this.tty) this.out.write('\n');
      this.current = stage;
      this.started = now;
      this.lastPlain = 0;
    }
    const elapsed = (now - this.started) / 1000;
    const eta = done > 0 && done < total ? (elapsed / done) * (total - done) : 0;
    const tail = `${done}/${total}${info ? `  ${info}` : ''}${eta ? `  ETA ${fmtTime(eta)}` : ''}  ${fmtTime(elapsed)}`;
    if (this.tty) {
      const width = 30;
      const fill = total > 0 ? Math.round((done / total) * width) : 0;
      this.out.write(`\r\x1b[K${LABELS[stage].padEnd(16)} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${tail}`);
    } else if (done === total || now - this.lastPlain > 5000 || stage === 'denoise') {
      // Plain mode: every denoising step, otherwise at most every 5 s and at the end of a stage.
      this.lastPlain = now;
      this.out.write(`${LABELS[stage]}: ${tail}\n`);
    }
  }

  end(): void {
    if (this.current && this.tty) this.out.write('\n');
    this.current = null;
  }
}

export function fmtTime(s: number): string {
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s - m * 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fmtBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}
