// Peer: onnxruntime-node with its WebGPU execution provider (its own Dawn inside libonnxruntime).
// Each case is a one-op ONNX model written by bench/peers/onnx.ts whose operands are initializers, so
// they are uploaded once at session creation and stay on the device. The result stays on the device
// too (preferredOutputLocation 'gpu-buffer'); a second output, a 1-element Slice of the result, is
// fetched to the CPU: that makes run() return only once the op has finished, for 4 bytes of transfer.
// CPU fallback is disabled, so a node the WebGPU EP cannot run fails the case instead of silently
// running on the CPU.
import ort from 'onnxruntime-node';
import type { BenchCase } from '../cases.ts';
import { timeRuns } from '../timing.ts';
import { encodeModel, type OnnxGraph, type OnnxNode, type OnnxTensor } from './onnx.ts';
import { randomFill, readJob, reportInfo, runJob } from './protocol.ts';

const OUT = 'Y';
const PROBE = 'probe';

function initializer(name: string, dims: number[], seed: number): OnnxTensor {
  return { name, dims, data: randomFill(dims.reduce((a, b) => a * b, 1), seed) };
}

/** The op of the case as nodes + initializers, and its output dims. */
function opGraph(c: BenchCase): { nodes: OnnxNode[]; inits: OnnxTensor[]; outDims: number[]; note: string } {
  switch (c.kernel) {
    case 'matmul':
      return {
        nodes: [{ op: 'MatMul', inputs: ['X', 'W'], outputs: [OUT] }],
        inits: [initializer('X', [c.M, c.K], 1), initializer('W', [c.K, c.N], 2)],
        outDims: [c.M, c.N],
        note: 'MatMul, f32 weights (ours: bf16)',
      };
    case 'attention': {
      const dims = [1, c.S, c.H * c.D];
      return {
        nodes: [{ op: 'MultiHeadAttention', domain: 'com.microsoft', inputs: ['Q', 'K', 'V'], outputs: [OUT], attrs: { num_heads: c.H } }],
        inits: [initializer('Q', dims, 1), initializer('K', dims, 2), initializer('V', dims, 3)],
        outDims: dims,
        note: 'com.microsoft MultiHeadAttention',
      };
    }
    case 'conv3d':
      return {
        nodes: [{ op: 'Conv', inputs: ['X', 'W'], outputs: [OUT], attrs: { kernel_shape: [3, 3, 3], pads: [1, 1, 1, 1, 1, 1] } }],
        inits: [initializer('X', [1, c.C, c.T, c.H, c.W], 1), initializer('W', [c.O, c.C, 3, 3, 3], 2)],
        outDims: [1, c.O, c.T, c.H, c.W],
        note: 'Conv 3x3x3',
      };
    case 'layernorm':
      return {
        nodes: [{ op: 'LayerNormalization', inputs: ['X', 'S'], outputs: [OUT], attrs: { axis: -1, epsilon: { float: 1e-6 } } }],
        inits: [initializer('X', [c.rows, c.cols], 1), { name: 'S', dims: [c.cols], data: new Float32Array(c.cols).fill(1) }],
        outDims: [c.rows, c.cols],
        note: 'LayerNormalization (scale 1)',
      };
  }
}

function model(c: BenchCase): { bytes: Uint8Array; note: string } {
  const g = opGraph(c);
  const rank = g.outDims.length;
  const index = (v: number) => BigInt64Array.from({ length: rank }, () => BigInt(v));
  const graph: OnnxGraph = {
    nodes: [...g.nodes, { op: 'Slice', inputs: [OUT, 'probe_starts', 'probe_ends'], outputs: [PROBE] }],
    initializers: [...g.inits, { name: 'probe_starts', dims: [rank], data: index(0) }, { name: 'probe_ends', dims: [rank], data: index(1) }],
    inputs: [],
    outputs: [
      { name: OUT, dims: g.outDims },
      { name: PROBE, dims: g.outDims.map(() => 1) },
    ],
  };
  return { bytes: encodeModel(graph), note: g.note };
}

async function main(): Promise<void> {
  const job = readJob();
  const version = (ort.env as { versions?: { common?: string } }).versions?.common ?? '';
  reportInfo({ version: `onnxruntime-node ${version}` });
  await runJob(job, async (c) => {
    const m = model(c);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(m.bytes, {
        executionProviders: ['webgpu'],
        // No constant folding: every operand is a constant here, and the op must run at each call.
        graphOptimizationLevel: 'disabled',
        preferredOutputLocation: { [OUT]: 'gpu-buffer', [PROBE]: 'cpu' },
        extra: { session: { disable_cpu_ep_fallback: '1' } },
      } as ort.InferenceSession.SessionOptions);
    } catch (e) {
      const msg = String((e as Error).message ?? e);
      if (/assigned to the default CPU EP/.test(msg)) return { medianMs: null, runs: 0, note: `${m.note}: not supported by the WebGPU EP (would run on the CPU)` };
      if (/webgpu/i.test(msg) && /(not|un)\s*(available|supported|registered)/i.test(msg)) return { medianMs: null, runs: 0, note: `WebGPU EP unavailable on this platform: ${msg.split('\n')[0]}` };
      throw e;
    }
    try {
      const t = await timeRuns(async () => {
        const out = await session.run({});
        out[OUT].dispose();
      }, job.policy);
      return { ...t, note: [m.note, 'device-resident operands (initializers), output left on the GPU', t.note].filter(Boolean).join('; ') };
    } finally {
      await session.release();
    }
  });
}

await main();
