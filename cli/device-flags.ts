// Device selection flags shared by every subcommand.
import type { DeviceOptions } from '../engine/index.ts';

export const deviceFlagSpec = {
  adapter: { type: 'string' },
  backend: { type: 'string' },
  'max-binding-bytes': { type: 'string' },
} as const;

export const deviceFlagHelp = `device options:
  --adapter NAME           use the adapter whose device name contains NAME (env WAN_ADAPTER)
  --backend NAME           Dawn backend: vulkan, metal, d3d12, opengl, null (env WAN_BACKEND)
  --max-binding-bytes N    pretend storage bindings hold at most N bytes (exercises the large-tensor path)`;

export function deviceOptions(values: Record<string, unknown>): DeviceOptions {
  const opts: DeviceOptions = {};
  if (typeof values.adapter === 'string') opts.adapter = values.adapter;
  if (typeof values.backend === 'string') opts.backend = values.backend;
  const mb = values['max-binding-bytes'];
  if (typeof mb === 'string') {
    const n = Number(mb);
    if (!Number.isInteger(n) || n < 256) throw new Error(`--max-binding-bytes must be an integer >= 256, got "${mb}"`);
    opts.maxStorageBindingBytes = n;
  }
  return opts;
}
