// The engine: one device, its buffer pool, the kernel cache and the command recorder.
// Work is recorded into one command encoder (many dispatches, one compute pass) and submitted only
// when needed: before a readback, before an upload into a reused buffer, or when the uniform ring
// is full. Errors are captured per submitted batch by error scopes and thrown at the next sync point,
// naming the ops of that batch.
import { Gpu, type DeviceOptions } from './device.ts';
import { type DType, encode, storageBytes, storageSegments, dtypeBytes } from './dtype.ts';
import { BufferPool, type MemoryStats } from './pool.ts';
import { Storage, Tensor, numelOf, type Segment } from './tensor.ts';
import type { Binding } from './windows.ts';
import { loadShader } from './shaders.ts';
import { gently } from './poll.ts';

export interface Dispatch {
  /** Name of the op (appears in error messages and profiles). */
  op: string;
  pipeline: GPUComputePipeline;
  /** Uniform parameters, bound at @binding(0) when present. */
  params?: Uniforms;
  /** Storage buffers, bound at @binding(1..) (or from 0 when there are no params). */
  buffers: Binding[];
  /** Workgroup count: a total (spread over x and y when above the per-dimension limit) or explicit xyz. */
  workgroups: number | [number, number, number];
}

/** Little-endian uniform block builder: scalars in declaration order, 4 bytes each. */
export class Uniforms {
  private view = new DataView(new ArrayBuffer(256));
  length = 0;
  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`uniform u32 out of range: ${v}`);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
    return this;
  }
  i32(v: number): this {
    this.view.setInt32(this.length, v, true);
    this.length += 4;
    return this;
  }
  f32(v: number): this {
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
    return this;
  }
  get bytes(): Uint8Array {
    return new Uint8Array(this.view.buffer, 0, Math.max(16, Math.ceil(this.length / 16) * 16));
  }
}

export interface EngineStats {
  dispatches: number;
  submits: number;
  pipelinesCompiled: number;
}

const RING_BYTES = 1 << 20;

interface PendingCheck {
  ops: string[];
  scopes: Promise<GPUError | null>[];
}

export class Engine {
  readonly pool: BufferPool;
  readonly stats: EngineStats = { dispatches: 0, submits: 0, pipelinesCompiled: 0 };
  private pipelines = new Map<string, GPUComputePipeline>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private batchOps: string[] = [];
  private recorded = 0;
  private pending: PendingCheck[] = [];
  private ring: GPUBuffer;
  private ringData = new Uint8Array(RING_BYTES);
  private ringUsed = 0;
  private scopes: Set<Tensor>[] = [];
  private live = new Set<Tensor>();

  private constructor(readonly gpu: Gpu) {
    this.pool = new BufferPool(gpu, () => this.open(), () => this.flush());
    this.ring = gpu.device.createBuffer({ size: RING_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'uniform ring' });
  }

  static async create(opts: DeviceOptions = {}): Promise<Engine> {
    return new Engine(await Gpu.create(opts));
  }

  get device(): GPUDevice {
    return this.gpu.device;
  }

  // ---------------------------------------------------------------- tensors

  /** An uninitialised tensor (contents undefined until a kernel writes it). */
  empty(shape: readonly number[], dtype: DType = 'f32', label = 'tensor', opts: { exactSize?: boolean } = {}): Tensor {
    this.gpu.check(`allocating "${label}"`);
    // One buffer, or whole rows per segment above the buffer limit (storageSegments).
    const exact = opts.exactSize === true;
    const segments: Segment[] = storageSegments(shape, dtype, this.gpu.maxBufferBytes, label).map(({ elem0, elems }) => ({
      buffer: this.pool.acquire(storageBytes(dtype, elems), label, exact),
      elem0,
      elems,
    }));
    return new Tensor(this, new Storage(dtype, numelOf(shape), segments), shape, label);
  }

  /** A tensor of zeros (cleared on the device, nothing uploaded). */
  zeros(shape: readonly number[], dtype: DType = 'f32', label = 'zeros'): Tensor {
    const t = this.empty(shape, dtype, label);
    this.open();
    this.endPass();
    for (const seg of t.storage.segments) {
      const bytes = storageBytes(dtype, seg.elems);
      if (bytes > 0) this.encoder!.clearBuffer(seg.buffer, 0, bytes);
    }
    this.batchOps.push(`zeros ${label}`);
    this.recorded++;
    return t;
  }

  /**
   * Records a copy of `count` elements from src[srcElem0...] to dst[dstElem0...] (same dtype; element
   * offsets and the byte count must be 4-byte aligned). Segment boundaries are handled.
   */
  copyElements(src: Tensor, srcElem0: number, dst: Tensor, dstElem0: number, count: number): void {
    src.assertAlive('copyElements');
    dst.assertAlive('copyElements');
    if (src.dtype !== dst.dtype) throw new Error(`copyElements: ${src.dtype} -> ${dst.dtype}`);
    const b = dtypeBytes(src.dtype);
    if (srcElem0 < 0 || dstElem0 < 0 || srcElem0 + count > src.numel || dstElem0 + count > dst.numel) {
      throw new Error(`copyElements: range outside "${src.label}" [${src.shape}] or "${dst.label}" [${dst.shape}]`);
    }
    if (((srcElem0 * b) | (dstElem0 * b) | (count * b)) % 4 !== 0) throw new Error('copyElements: offsets and size must be 4-byte aligned');
    this.open();
    this.endPass();
    let done = 0;
    while (done < count) {
      const s = src.storage.segments.find((g) => srcElem0 + done >= g.elem0 && srcElem0 + done < g.elem0 + g.elems)!;
      const d = dst.storage.segments.find((g) => dstElem0 + done >= g.elem0 && dstElem0 + done < g.elem0 + g.elems)!;
      const n = Math.min(count - done, s.elem0 + s.elems - (srcElem0 + done), d.elem0 + d.elems - (dstElem0 + done));
      this.encoder!.copyBufferToBuffer(s.buffer, (srcElem0 + done - s.elem0) * b, d.buffer, (dstElem0 + done - d.elem0) * b, n * b);
      done += n;
    }
    this.batchOps.push('copyElements');
    this.recorded++;
  }

  /** A tensor holding `data` (converted to `dtype` on the host: bf16 rounds to nearest even). */
  upload(data: ArrayLike<number>, shape: readonly number[], dtype: DType = 'f32', label = 'tensor', opts: { exactSize?: boolean } = {}): Tensor {
    const n = numelOf(shape);
    if (data.length !== n) throw new Error(`upload "${label}": ${data.length} values for shape [${shape}] (${n} elements)`);
    return this.uploadBytes(encode(dtype, data), shape, dtype, label, opts);
  }

  /** A tensor from bytes already in the device layout of `dtype` (little endian, halves packed). */
  uploadBytes(bytes: Uint8Array, shape: readonly number[], dtype: DType, label = 'tensor', opts: { exactSize?: boolean } = {}): Tensor {
    const t = this.empty(shape, dtype, label, opts);
    const need = t.numel * dtypeBytes(dtype);
    if (bytes.byteLength < need) throw new Error(`upload "${label}": ${bytes.byteLength} bytes for ${need}`);
    this.writeTensor(t, bytes);
    return t;
  }

  /** Overwrites a tensor's contents from host bytes in its device layout. */
  writeTensor(t: Tensor, bytes: Uint8Array): void {
    t.assertAlive('writeTensor');
    // queue.writeBuffer runs before any not yet submitted work: submit that work first, since it may
    // still read this (reused) buffer.
    if (this.recorded > 0) this.flush();
    this.open();
    const b = dtypeBytes(t.dtype);
    for (const seg of t.storage.segments) {
      const start = seg.elem0 * b;
      const len = Math.ceil((seg.elems * b) / 4) * 4;
      const avail = Math.min(len, bytes.byteLength - start);
      if (avail <= 0) continue;
      if (avail % 4 === 0) {
        this.device.queue.writeBuffer(seg.buffer, 0, bytes.buffer, bytes.byteOffset + start, avail);
      } else {
        const padded = new Uint8Array(Math.ceil(avail / 4) * 4);
        padded.set(bytes.subarray(start, start + avail));
        this.device.queue.writeBuffer(seg.buffer, 0, padded);
      }
    }
  }

  /**
   * Writes host bytes (the tensor's device layout) at element `elem0` of a tensor: the streaming path
   * for weights larger than host memory should hold at once. `elem0` must be even for half types.
   */
  writeTensorRange(t: Tensor, elem0: number, bytes: Uint8Array): void {
    t.assertAlive('writeTensorRange');
    const b = dtypeBytes(t.dtype);
    const n = Math.floor(bytes.byteLength / b);
    if ((elem0 * b) % 4 !== 0) throw new Error(`writeTensorRange "${t.label}": element ${elem0} is not word aligned`);
    if (elem0 + n > t.numel) throw new Error(`writeTensorRange "${t.label}": elements [${elem0}, ${elem0 + n}) beyond ${t.numel}`);
    if (this.recorded > 0) this.flush();
    this.open();
    for (const seg of t.storage.segments) {
      const lo = Math.max(elem0, seg.elem0);
      const hi = Math.min(elem0 + n, seg.elem0 + seg.elems);
      if (lo >= hi) continue;
      let chunk = bytes.subarray((lo - elem0) * b, (hi - elem0) * b);
      if (chunk.byteLength % 4 !== 0) {
        const padded = new Uint8Array(Math.ceil(chunk.byteLength / 4) * 4);
        padded.set(chunk);
        chunk = padded;
      }
      this.device.queue.writeBuffer(seg.buffer, (lo - seg.elem0) * b, chunk.buffer, chunk.byteOffset, chunk.byteLength);
    }
  }

  /** Reads a tensor's device bytes (its dtype's layout). The only way data leaves the device. */
  async readBytes(t: Tensor): Promise<Uint8Array> {
    t.assertAlive('read');
    this.gpu.check(`reading "${t.label}"`);
    const b = dtypeBytes(t.dtype);
    const total = storageBytes(t.dtype, t.numel);
    const staging = this.device.createBuffer({ size: Math.max(4, total), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: `read ${t.label}` });
    this.open();
    this.endPass();
    for (const seg of t.storage.segments) {
      const len = Math.ceil((seg.elems * b) / 4) * 4;
      if (len > 0) this.encoder!.copyBufferToBuffer(seg.buffer, 0, staging, seg.elem0 * b, len);
    }
    this.batchOps.push(`read ${t.label}`);
    this.recorded++;
    this.flush();
    try {
      await this.settle();
      await gently(() => staging.mapAsync(GPUMapMode.READ));
      const out = new Uint8Array(staging.getMappedRange().slice(0));
      staging.unmap();
      return out;
    } finally {
      staging.destroy();
    }
  }

  /** Called by Tensor: a new handle joins the innermost scope. */
  track(t: Tensor): void {
    this.live.add(t);
    this.scopes[this.scopes.length - 1]?.add(t);
  }

  untrack(t: Tensor): void {
    this.live.delete(t);
    for (const s of this.scopes) s.delete(t);
  }

  /** Removes a tensor from every open scope: the caller owns it (and disposes it). */
  detach(t: Tensor): void {
    for (const s of this.scopes) s.delete(t);
  }

  releaseStorage(s: Storage): void {
    for (const seg of s.segments) this.pool.release(seg.buffer);
  }

  /**
   * Runs `fn` and disposes every tensor it created except the ones it returns (a tensor, or tensors
   * inside returned arrays / plain objects). Returned tensors move to the enclosing scope.
   * Scopes nest; do not interleave two async scopes.
   */
  scope<T>(fn: () => T): T {
    this.scopes.push(new Set());
    let result: T;
    try {
      result = fn();
    } catch (e) {
      this.closeScope(undefined);
      throw e;
    }
    if (result instanceof Promise) {
      return result.then(
        (r) => (this.closeScope(r), r),
        (e) => {
          this.closeScope(undefined);
          throw e;
        },
      ) as T;
    }
    this.closeScope(result);
    return result;
  }

  private closeScope(result: unknown): void {
    const created = this.scopes.pop()!;
    const keep = new Set<Tensor>();
    collectTensors(result, keep, 0);
    for (const t of created) if (!keep.has(t)) t.dispose();
    const parent = this.scopes[this.scopes.length - 1];
    if (parent) for (const t of keep) if (!t.isDisposed) parent.add(t);
  }

  /** Tensors not yet disposed (for leak checks). */
  get liveTensors(): number {
    return this.live.size;
  }

  memory(): MemoryStats {
    return { ...this.pool.stats };
  }

  // ---------------------------------------------------------------- kernels and dispatch

  /**
   * The compute pipeline of `shaders/<name>.wgsl`, specialised by text defines ({{KEY}} in the source)
   * and pipeline-overridable constants. Compiled once per key.
   */
  pipeline(name: string, defines: Record<string, string | number> = {}, constants: Record<string, number> = {}): GPUComputePipeline {
    const key = `${name}|${JSON.stringify(defines)}|${JSON.stringify(constants)}`;
    let p = this.pipelines.get(key);
    if (!p) {
      this.open();
      const code = loadShader(name, defines, this.gpu.hasF16);
      // The defines can hold generated code: keep the label (repeated in every error message) short.
      const shown = Object.keys(defines).length ? JSON.stringify(defines) : '';
      const label = `${name}${shown.length > 160 ? `${shown.slice(0, 160)}…` : shown}`;
      const module = this.device.createShaderModule({ code, label });
      p = this.device.createComputePipeline({ layout: 'auto', label, compute: { module, entryPoint: 'main', constants } });
      this.pipelines.set(key, p);
      this.stats.pipelinesCompiled++;
    }
    return p;
  }

  /** Records one dispatch into the open batch. */
  dispatch(d: Dispatch): void {
    this.gpu.check(d.op);
    let wg: [number, number, number];
    if (typeof d.workgroups === 'number') {
      const n = d.workgroups;
      if (n === 0) return;
      const max = this.gpu.maxWorkgroupsPerDim;
      const x = Math.min(n, max);
      const y = Math.ceil(n / x);
      if (y > max) throw new Error(`${d.op}: ${n} workgroups exceed ${max}^2`);
      wg = [x, y, 1];
    } else {
      wg = d.workgroups;
      if (wg[0] * wg[1] * wg[2] === 0) return;
    }
    const entries: GPUBindGroupEntry[] = [];
    let slot = 0;
    if (d.params) {
      const bytes = d.params.bytes;
      let at = Math.ceil(this.ringUsed / this.gpu.uniformAlign) * this.gpu.uniformAlign;
      if (at + bytes.byteLength > RING_BYTES) {
        this.flush();
        at = 0;
      }
      this.ringData.set(bytes, at);
      this.ringUsed = at + bytes.byteLength;
      entries.push({ binding: slot++, resource: { buffer: this.ring, offset: at, size: bytes.byteLength } });
    }
    for (const b of d.buffers) entries.push({ binding: slot++, resource: { buffer: b.buffer, offset: b.offset, size: b.size } });
    this.open();
    const bindGroup = this.device.createBindGroup({ layout: d.pipeline.getBindGroupLayout(0), entries, label: d.op });
    if (!this.pass) this.pass = this.encoder!.beginComputePass({ label: 'wan batch' });
    this.pass.setPipeline(d.pipeline);
    this.pass.setBindGroup(0, bindGroup);
    this.pass.dispatchWorkgroups(wg[0], wg[1], wg[2]);
    if (this.batchOps[this.batchOps.length - 1] !== d.op) this.batchOps.push(d.op);
    this.recorded++;
    this.stats.dispatches++;
  }

  /** Records a buffer-to-buffer copy (bytes). */
  copy(src: Binding, dst: Binding, bytes: number, op = 'copy'): void {
    this.open();
    this.endPass();
    this.encoder!.copyBufferToBuffer(src.buffer, src.offset, dst.buffer, dst.offset, bytes);
    this.batchOps.push(op);
    this.recorded++;
  }

  /** Submits the recorded batch (if any). Does not wait. */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    if (this.ringUsed > 0) this.device.queue.writeBuffer(this.ring, 0, this.ringData.buffer, 0, Math.ceil(this.ringUsed / 4) * 4);
    this.device.queue.submit([this.encoder.finish()]);
    this.stats.submits++;
    const scopes = [this.device.popErrorScope(), this.device.popErrorScope(), this.device.popErrorScope()];
    this.pending.push({ ops: this.batchOps, scopes });
    this.encoder = null;
    this.batchOps = [];
    this.recorded = 0;
    this.ringUsed = 0;
  }

  /** Submits and waits for all work; throws the first error a batch raised, naming its ops. */
  async sync(): Promise<void> {
    this.flush();
    await gently(() => this.device.queue.onSubmittedWorkDone());
    await this.settle();
  }

  private async settle(): Promise<void> {
    const pending = this.pending.splice(0);
    for (const p of pending) {
      for (const s of p.scopes) {
        const err = await s;
        if (err) {
          const kind = err.constructor?.name ?? 'GPUError';
          throw new Error(`WebGPU ${kind} in a batch of [${p.ops.slice(0, 20).join(', ')}${p.ops.length > 20 ? ', …' : ''}]: ${err.message}`);
        }
      }
    }
    this.gpu.check('sync');
  }

  private open(): void {
    if (this.encoder) return;
    this.gpu.check('recording');
    this.device.pushErrorScope('internal');
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    this.encoder = this.device.createCommandEncoder({ label: 'wan batch' });
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  /** Waits for outstanding work, frees every live tensor and the device. */
  async destroy(): Promise<void> {
    try {
      if (!this.gpu.lostReason) await this.sync();
    } finally {
      for (const t of [...this.live]) t.dispose();
      this.pool.trim();
      this.ring.destroy();
      this.gpu.destroy();
    }
  }
}

function collectTensors(v: unknown, out: Set<Tensor>, depth: number): void {
  if (depth > 4 || v === null || typeof v !== 'object') return;
  if (v instanceof Tensor) {
    out.add(v);
    return;
  }
  if (Array.isArray(v)) for (const x of v) collectTensors(x, out, depth + 1);
  else if (Object.getPrototypeOf(v) === Object.prototype || v instanceof Map) {
    for (const x of v instanceof Map ? v.values() : Object.values(v)) collectTensors(x, out, depth + 1);
  }
}
