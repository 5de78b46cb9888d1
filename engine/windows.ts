// Binding windows: how a kernel addresses tensors larger than one storage binding.
// A kernel views each operand as rows (a fixed number of elements per row) and processes the rows
// in windows; each window binds, per operand, an aligned byte range inside one segment that fits the
// device's maxStorageBufferBindingSize. Kernels receive the window's first row as a uniform.
import { dtypeBytes, storageBytes } from './dtype.ts';
import type { Gpu } from './device.ts';
import type { Tensor } from './tensor.ts';

export interface Binding {
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

export interface WindowOperand {
  tensor: Tensor;
  /** Elements per row of this operand in the kernel's view (rows are shared by all operands). */
  rowElems: number;
}

export interface Window {
  row0: number;
  rows: number;
  /** One binding per operand, in the order given. */
  bindings: Binding[];
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Binds a whole tensor; throws a clear error if it is segmented or larger than one binding. */
export function wholeBinding(gpu: Gpu, t: Tensor, op: string): Binding {
  t.assertAlive(op);
  const segs = t.storage.segments;
  const size = storageBytes(t.dtype, t.numel);
  if (segs.length !== 1 || size > gpu.maxBindingBytes) {
    throw new Error(
      `${op}: tensor "${t.label}" [${t.shape}] ${t.dtype} (${size} bytes) exceeds one storage binding ` +
        `(${gpu.maxBindingBytes} bytes) and this operand is not windowed by the kernel`,
    );
  }
  return { buffer: segs[0].buffer, offset: 0, size: Math.max(4, size) };
}

/**
 * Splits rows [0, totalRows) into windows in which every operand's rows fit one binding.
 * `maxRows` optionally caps a window (kernels with a per-dispatch limit on rows).
 */
export function planWindows(gpu: Gpu, op: string, totalRows: number, operands: WindowOperand[], maxRows = Infinity): Window[] {
  const align = gpu.storageAlign;
  let granule = 1;
  for (const o of operands) {
    o.tensor.assertAlive(op);
    if (o.rowElems * totalRows !== o.tensor.numel) {
      throw new Error(`${op}: operand "${o.tensor.label}" [${o.tensor.shape}] is not ${totalRows} rows of ${o.rowElems}`);
    }
    const rowBytes = o.rowElems * dtypeBytes(o.tensor.dtype);
    const g = align / gcd(rowBytes, align);
    granule = (granule * g) / gcd(granule, g);
  }
  const windows: Window[] = [];
  let r = 0;
  while (r < totalRows) {
    let n = Math.min(totalRows - r, maxRows);
    const segs = operands.map((o) => segmentAt(o.tensor, r * o.rowElems, op));
    operands.forEach((o, i) => {
      const bytes = dtypeBytes(o.tensor.dtype);
      const fitBinding = Math.floor(gpu.maxBindingBytes / (o.rowElems * bytes));
      const seg = segs[i];
      const inSegment = Math.floor((seg.elem0 + seg.elems - r * o.rowElems) / o.rowElems);
      n = Math.min(n, fitBinding, inSegment);
    });
    if (n < totalRows - r) {
      // The next window must start aligned inside its segment for every operand: take the largest
      // window end (at most `granule` rows back) where that holds. Segment starts are offset 0.
      let m = n;
      const aligned = (end: number) =>
        operands.every((o) => {
          const elem = end * o.rowElems;
          const seg = o.tensor.storage.segments.find((g) => elem >= g.elem0 && elem < g.elem0 + g.elems);
          return !seg || ((elem - seg.elem0) * dtypeBytes(o.tensor.dtype)) % align === 0;
        });
      while (m > 0 && m > n - granule && !aligned(r + m)) m--;
      n = aligned(r + m) ? m : 0;
    }
    if (n <= 0) {
      const big = operands.map((o) => `"${o.tensor.label}" ${o.rowElems * dtypeBytes(o.tensor.dtype)} bytes/row`).join(', ');
      throw new Error(`${op}: cannot fit ${granule} aligned row(s) of (${big}) into one storage binding of ${gpu.maxBindingBytes} bytes`);
    }
    const bindings = operands.map((o, i) => {
      const seg = segs[i];
      const bytes = dtypeBytes(o.tensor.dtype);
      const offset = (r * o.rowElems - seg.elem0) * bytes;
      if (offset % align !== 0) throw new Error(`${op}: window of "${o.tensor.label}" at row ${r} is not ${align}-byte aligned`);
      const size = Math.max(4, Math.ceil((n * o.rowElems * bytes) / 4) * 4);
      return { buffer: seg.buffer, offset, size };
    });
    windows.push({ row0: r, rows: n, bindings });
    r += n;
  }
  return windows;
}

function segmentAt(t: Tensor, elem: number, op: string) {
  for (const s of t.storage.segments) if (elem >= s.elem0 && elem < s.elem0 + s.elems) return s;
  throw new Error(`${op}: element ${elem} of "${t.label}" lies in no segment`);
}
