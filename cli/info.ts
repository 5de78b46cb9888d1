// `wan info --device`: the adapter, its limits and features as the engine sees them.
import { parseArgs } from 'node:util';
import { Engine } from '../engine/index.ts';
import { printCheckpointInfo } from './info-checkpoint.ts';
import { planCommand } from './info-plan.ts';
import { deviceFlagHelp, deviceFlagSpec, deviceOptions } from './device-flags.ts';

export const infoHelp = `usage: wan info --device [--json] [device options]
       wan info <ckpt_dir> [--json]
       wan info --plan [--task T --size W*H --frame_num N] [ckpt_dir]   (see wan info --plan --help)

--device: the WebGPU adapter the engine would use: name, backend, the limits it requested, the
optional features it enabled, and the effective storage-binding / buffer limits.
<ckpt_dir>: the task of a checkpoint folder, each component's architecture (inferred from the
weights), parameter counts, stored dtypes, bytes on disk and the device memory it needs.
${deviceFlagHelp}`;

export async function infoCommand(argv: string[]): Promise<number> {
  if (argv.includes('--plan')) return planCommand(argv);
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { device: { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...deviceFlagSpec },
  });
  if (!values.help && !values.device && positionals.length === 1) {
    await printCheckpointInfo(positionals[0], Boolean(values.json));
    return 0;
  }
  if (values.help || !values.device) {
    console.log(infoHelp);
    return values.help ? 0 : 2;
  }
  const e = await Engine.create(deviceOptions(values));
  try {
    const g = e.gpu;
    const s = g.summary;
    const report = {
      adapter: s.description || s.device,
      vendor: s.vendor,
      architecture: s.architecture,
      backend: s.backend,
      enabled: { 'shader-f16': g.hasF16, subgroups: g.hasSubgroups, 'timestamp-query': g.hasTimestamps },
      effective: { maxBindingBytes: g.maxBindingBytes, maxBufferBytes: g.maxBufferBytes, storageAlign: g.storageAlign },
      adapterFeatures: s.features,
      limits: s.limits,
    };
    if (values.json) {
      console.log(JSON.stringify(report, null, 1));
    } else {
      console.log(`adapter       ${report.adapter}`);
      console.log(`vendor        ${report.vendor || '-'}   architecture ${report.architecture || '-'}   backend ${report.backend}`);
      console.log(`enabled       ${Object.entries(report.enabled).map(([k, v]) => `${k}:${v ? 'yes' : 'no'}`).join('  ')}`);
      console.log(`binding limit ${g.maxBindingBytes} bytes, buffer limit ${g.maxBufferBytes} bytes, storage offset alignment ${g.storageAlign}`);
      console.log(`features      ${s.features.join(', ')}`);
      console.log('limits');
      for (const [k, v] of Object.entries(s.limits)) console.log(`  ${k.padEnd(44)} ${v}`);
    }
  } finally {
    await e.destroy();
  }
  return 0;
}
