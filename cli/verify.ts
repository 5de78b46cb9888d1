// `wan verify <fixture-dir>... [--json]`: runs reference fixtures through the engine.
import { parseArgs } from 'node:util';
import { Engine } from '../engine/index.ts';
import { expandFixtureDirs, knownKinds, verifyFixture, type VerifyResult } from '../model/reference/index.ts';
import { deviceFlagHelp, deviceFlagSpec, deviceOptions } from './device-flags.ts';

export const verifyHelp = `usage: wan verify <fixture-dir>... [--json] [device options]

Runs each fixture (a folder with case.json + io.safetensors, or a folder of such folders) through the
engine and compares every output with the PyTorch reference: relative L2 error ||out-ref||/||ref||,
max abs error, tolerance, PASS/FAIL. Ends with "N passed, M failed"; exits 1 on any failure.
  --json                   print JSON instead: one object per fixture
                           {fixture, kind, pass, outputs:[{name, relL2, maxAbs, tol, pass}]} (an array for several)
${deviceFlagHelp}
known kinds: ${knownKinds().join(', ')}`;

const fmt = (x: number) => (Number.isFinite(x) ? x.toExponential(2) : String(x));

function printText(r: VerifyResult): void {
  console.log(`${r.fixture} (${r.kind})`);
  if (r.error) console.log(`  FAIL  ${r.error}`);
  for (const o of r.outputs) {
    const cmp = o.metric === 'exact' ? `maxAbs <= ${o.tol}` : `tol ${fmt(o.tol)}`;
    console.log(
      `  ${o.name.padEnd(16)} relL2 ${fmt(o.relL2).padStart(9)}  maxAbs ${fmt(o.maxAbs).padStart(9)}  ${cmp.padEnd(14)} ${o.pass ? 'PASS' : 'FAIL'}${o.note ? `  (${o.note})` : ''}`,
    );
  }
}

export async function verifyCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...deviceFlagSpec },
  });
  if (values.help || positionals.length === 0) {
    console.log(verifyHelp);
    return positionals.length === 0 && !values.help ? 2 : 0;
  }
  const dirs = expandFixtureDirs(positionals);
  const engine = await Engine.create(deviceOptions(values));
  const results: VerifyResult[] = [];
  try {
    for (const dir of dirs) {
      const r = await verifyFixture(engine, dir);
      results.push(r);
      if (!values.json) printText(r);
    }
  } finally {
    await engine.destroy().catch(() => undefined);
  }
  const passed = results.filter((r) => r.pass).length;
  if (values.json) {
    const plain = results.map((r) => ({
      fixture: r.fixture,
      kind: r.kind,
      pass: r.pass,
      ...(r.error ? { error: r.error } : {}),
      // JSON has no Infinity/NaN: those become null.
      outputs: r.outputs.map(({ name, relL2, maxAbs, tol, pass }) => ({ name, relL2, maxAbs, tol, pass })),
    }));
    console.log(JSON.stringify(plain.length === 1 ? plain[0] : plain, null, 1));
  } else {
    console.log(`${passed} passed, ${results.length - passed} failed`);
  }
  return passed === results.length ? 0 : 1;
}
