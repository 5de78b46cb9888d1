// Buffer pool with size classes: a forward pass releases and re-acquires buffers of the same few sizes,
// so after the first pass nothing is allocated on the device.
import type { Gpu } from './device.ts';

const USAGE_STORAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST

/**
 * Size class of a request: the next value of the form 2^k or 1.5 * 2^k (at most 33% waste),
 * with 256 bytes as the smallest class. Requests above `cap` get their exact (256-rounded) size.
 */
export function sizeClass(bytes: number, cap: number): number {
  const min = 256;
  if (bytes <= min) return min;
  let p = 2 ** Math.ceil(Math.log2(bytes));
  if (p * 0.75 >= bytes) p = p * 0.75;
  const rounded = Math.ceil(bytes / 256) * 256;
  return p > cap ? rounded : p;
}

export interface MemoryStats {
  /** Bytes in buffers handed out to tensors now. */
  liveBytes: number;
  peakLiveBytes: number;
  /** Bytes of all device buffers the pool owns (live + cached for reuse). */
  allocatedBytes: number;
  peakAllocatedBytes: number;
  /** Device buffers created since the pool started (a steady forward pass adds none). */
  buffersCreated: number;
}

/** A buffer request that the device-memory budget (BufferPool.limitBytes) cannot satisfy. */
export class DeviceMemoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeviceMemoryError';
  }
}

export class BufferPool {
  /**
   * Device-memory budget in bytes (null: none, the driver's own limit applies). A request that would
   * take the pool's buffers above it first frees the cached (unused) buffers, then fails with a
   * DeviceMemoryError instead of letting the driver run out (`--max-device-memory`).
   */
  limitBytes: number | null = null;
  private free = new Map<number, GPUBuffer[]>();
  private sizes = new WeakMap<GPUBuffer, number>();
  readonly stats: MemoryStats = { liveBytes: 0, peakLiveBytes: 0, allocatedBytes: 0, peakAllocatedBytes: 0, buffersCreated: 0 };

  /**
   * `onAllocate` runs before a device buffer is created; `beforeTrim` before cached buffers are
   * destroyed (the engine submits its recorded work there: a destroyed buffer must not be in an
   * unsubmitted command buffer, while submitted work keeps it alive until it completes).
   */
  constructor(private gpu: Gpu, private onAllocate: () => void, private beforeTrim: () => void = () => {}) {}

  /**
   * A buffer of at least `bytes` (storage, copy src/dst): of the request's size class, or with
   * `exact` of its 256-rounded size (weights: allocated once, so a size class would only waste up
   * to a third of them; a streamed block's tensors come back with the same exact sizes).
   */
  acquire(bytes: number, label: string, exact = false): GPUBuffer {
    if (bytes > this.gpu.maxBufferBytes) {
      throw new Error(`${label}: a single buffer of ${bytes} bytes exceeds the device buffer limit ${this.gpu.maxBufferBytes}`);
    }
    const size = exact ? Math.max(256, Math.ceil(bytes / 256) * 256) : sizeClass(bytes, this.gpu.maxBufferBytes);
    const list = this.free.get(size);
    let buf = list?.pop();
    if (!buf) {
      if (this.limitBytes !== null && this.stats.allocatedBytes + size > this.limitBytes) {
        this.trim();
        if (this.stats.allocatedBytes + size > this.limitBytes) {
          throw new DeviceMemoryError(
            `${label}: ${size} more bytes would exceed the device-memory budget of ${this.limitBytes} bytes ` +
              `(${this.stats.liveBytes} in use); raise --max-device-memory or use a lighter --memory-mode`,
          );
        }
      }
      this.onAllocate();
      buf = this.gpu.device.createBuffer({ size, usage: USAGE_STORAGE, label });
      this.sizes.set(buf, size);
      this.stats.buffersCreated++;
      this.stats.allocatedBytes += size;
      this.stats.peakAllocatedBytes = Math.max(this.stats.peakAllocatedBytes, this.stats.allocatedBytes);
    }
    this.stats.liveBytes += size;
    this.stats.peakLiveBytes = Math.max(this.stats.peakLiveBytes, this.stats.liveBytes);
    return buf;
  }

  /** Returns a buffer for reuse. Safe while queued work still uses it: later work is ordered after it. */
  release(buf: GPUBuffer): void {
    const size = this.sizes.get(buf);
    if (size === undefined) throw new Error('BufferPool.release: buffer was not made by this pool');
    this.stats.liveBytes -= size;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buf);
  }

  /** Frees every cached buffer (e.g. between pipeline stages or before loading another model). */
  trim(): void {
    if (this.free.size === 0) return;
    this.beforeTrim();
    for (const list of this.free.values()) {
      for (const b of list) {
        this.stats.allocatedBytes -= this.sizes.get(b)!;
        b.destroy();
      }
    }
    this.free.clear();
  }

  bytesOf(buf: GPUBuffer): number {
    return this.sizes.get(buf) ?? 0;
  }

  resetPeaks(): void {
    this.stats.peakLiveBytes = this.stats.liveBytes;
    this.stats.peakAllocatedBytes = this.stats.allocatedBytes;
  }
}
