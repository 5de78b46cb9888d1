// The benchmark cases: which kernels, at which shapes, and how much work each one is.
// The same case objects are sent to the peer processes (as JSON), so every system does the same work.

export type Kernel = 'matmul' | 'attention' | 'conv3d' | 'layernorm';
export const KERNELS: readonly Kernel[] = ['matmul', 'attention', 'conv3d', 'layernorm'];

/** Y[M, N] = X[M, K] · W[N, K]^T (a linear layer; ours with bf16 W, the peers with f32 W). */
export interface MatmulCase {
  kernel: 'matmul';
  M: number;
  K: number;
  N: number;
}

/** Self-attention, S query and S key tokens, H heads of D, softmax scale 1/sqrt(D), no mask. */
export interface AttentionCase {
  kernel: 'attention';
  S: number;
  H: number;
  D: number;
}

/** 3x3x3 conv, stride 1, padding 1 on every side: x [C, T, H, W] -> [O, T, H, W] (batch 1). */
export interface Conv3dCase {
  kernel: 'conv3d';
  C: number;
  T: number;
  H: number;
  W: number;
  O: number;
}

/** Layer norm over the last dim of [rows, cols], eps 1e-6, no affine (Wan's norm1/norm2). */
export interface LayerNormCase {
  kernel: 'layernorm';
  rows: number;
  cols: number;
}

export type BenchCase = MatmulCase | AttentionCase | Conv3dCase | LayerNormCase;

export type SizeSet = 'full' | 'quick' | 'tiny';

const SETS: Record<SizeSet, BenchCase[]> = {
  full: [
    { kernel: 'matmul', M: 2048, K: 3072, N: 3072 },
    { kernel: 'matmul', M: 4096, K: 3072, N: 14336 },
    { kernel: 'attention', S: 4096, H: 24, D: 128 },
    { kernel: 'conv3d', C: 96, T: 5, H: 64, W: 64, O: 96 },
    { kernel: 'conv3d', C: 384, T: 3, H: 32, W: 32, O: 384 },
    { kernel: 'layernorm', rows: 4096, cols: 3072 },
  ],
  quick: [
    { kernel: 'matmul', M: 1024, K: 3072, N: 3072 },
    { kernel: 'attention', S: 1024, H: 24, D: 128 },
    { kernel: 'conv3d', C: 96, T: 5, H: 32, W: 32, O: 96 },
    { kernel: 'conv3d', C: 384, T: 3, H: 16, W: 16, O: 384 },
    { kernel: 'layernorm', rows: 1024, cols: 3072 },
  ],
  // For the smoke test only: every code path, seconds in total.
  tiny: [
    { kernel: 'matmul', M: 33, K: 64, N: 40 },
    { kernel: 'attention', S: 40, H: 2, D: 128 },
    { kernel: 'conv3d', C: 4, T: 3, H: 6, W: 5, O: 8 },
    { kernel: 'layernorm', rows: 17, cols: 96 },
  ],
};

export function casesFor(set: SizeSet, only?: Kernel): BenchCase[] {
  return SETS[set].filter((c) => !only || c.kernel === only);
}

/** Human-readable shape, also the row's `shape` field. */
export function shapeOf(c: BenchCase): string {
  switch (c.kernel) {
    case 'matmul':
      return `${c.M}x${c.K}x${c.N}`;
    case 'attention':
      return `seq ${c.S} x ${c.H} heads x ${c.D}`;
    case 'conv3d':
      return `[${c.C}, ${c.T}, ${c.H}, ${c.W}]->${c.O} k3`;
    case 'layernorm':
      return `[${c.rows}, ${c.cols}]`;
  }
}

/** Floating-point operations of the case (multiply-add = 2); null for memory-bound kernels. */
export function flopsOf(c: BenchCase): number | null {
  switch (c.kernel) {
    case 'matmul':
      return 2 * c.M * c.K * c.N;
    case 'attention':
      // Q·K^T and P·V; the softmax's exp and sums are not counted.
      return 4 * c.H * c.S * c.S * c.D;
    case 'conv3d':
      return 2 * c.C * 27 * c.O * c.T * c.H * c.W;
    case 'layernorm':
      return null;
  }
}

/**
 * Minimal bytes the case must move to/from memory (each operand read once, the result written once),
 * with f32 everywhere except `weightBytes` per weight element (ours: 2 for bf16, peers: 4).
 */
export function bytesOf(c: BenchCase, weightBytes = 4): number {
  switch (c.kernel) {
    case 'matmul':
      return 4 * c.M * c.K + weightBytes * c.N * c.K + 4 * c.M * c.N;
    case 'attention':
      return 4 * 4 * c.H * c.S * c.D;
    case 'conv3d':
      return 4 * (c.C + c.O) * c.T * c.H * c.W + 4 * c.O * c.C * 27;
    case 'layernorm':
      return 2 * 4 * c.rows * c.cols;
  }
}

/** Memory-bound kernels are measured against stream bandwidth, the others against the compute ceiling. */
export function isMemoryBound(c: BenchCase): boolean {
  return c.kernel === 'layernorm';
}
