// Sequential writing of multi-GB files with bounded memory: the caller's fill function produces
// each chunk into one of two fixed buffers while the previous chunk is being written (the write
// runs on libuv's thread pool, so producing and writing overlap on two cores). Memory is two chunks
// whatever the file size. Small records (headers) are written as given; fixed-size fields can be
// patched afterwards by position (the zip CRCs, known only once their data has streamed past).
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

export const DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024;

/** Writes bytes [byteOffset, byteOffset + dst.byteLength) of some stream into `dst`. */
export type FillChunk = (dst: Uint8Array, byteOffset: number) => void;

export interface ChunkedWriterOptions {
  /** Bytes per chunk (a multiple of 8, so chunks never split an element); default 64 MiB. */
  chunkBytes?: number;
  /** Called after each write lands, with its byte count (progress). */
  onWritten?: (bytes: number) => void;
}

async function writeFully(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.byteLength - done, position + done);
    if (bytesWritten <= 0) throw new Error(`write returned ${bytesWritten} at offset ${position + done}`);
    done += bytesWritten;
  }
}

export class ChunkedFileWriter {
  /** Bytes written or queued so far: the offset the next write lands at. */
  position = 0;
  /** The longest chunk ever handed to a fill function (the memory tests read it). */
  largestFill = 0;
  /** Bytes of chunk buffers allocated (two chunks at most). */
  bufferBytes = 0;
  private buffers: Uint8Array[] = [];
  private nextBuffer = 0;
  /** The write in flight; resolves to its error, so a failure is thrown where it is awaited. */
  private pending: Promise<Error | null> | null = null;

  private constructor(
    readonly path: string,
    private fh: FileHandle | null,
    readonly chunkBytes: number,
    private onWritten?: (bytes: number) => void,
  ) {}

  /** Creates (truncates) `path`. */
  static async create(path: string, opts: ChunkedWriterOptions = {}): Promise<ChunkedFileWriter> {
    const chunk = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (!Number.isSafeInteger(chunk) || chunk <= 0 || chunk % 8 !== 0) throw new Error(`chunk size must be a positive multiple of 8 bytes, got ${chunk}`);
    return new ChunkedFileWriter(path, await fsp.open(path, 'w'), chunk, opts.onWritten);
  }

  private handle(): FileHandle {
    if (!this.fh) throw new Error(`${this.path}: writer is closed`);
    return this.fh;
  }

  private async drain(): Promise<void> {
    const p = this.pending;
    this.pending = null;
    const err = p ? await p : null;
    if (err) throw new Error(`${this.path}: ${err.message}`);
  }

  private startWrite(bytes: Uint8Array): void {
    const fh = this.handle();
    const n = bytes.byteLength;
    this.pending = writeFully(fh, bytes, this.position).then(
      () => {
        this.onWritten?.(n);
        return null;
      },
      (e: Error) => e,
    );
    this.position += n;
  }

  /** Appends `bytes` (the caller must not change them until the next call on this writer returns). */
  async write(bytes: Uint8Array): Promise<void> {
    await this.drain();
    this.startWrite(bytes);
  }

  /** Appends `total` bytes produced by `fill`, one chunk at a time; `observe` sees each chunk (e.g. a running CRC). */
  async stream(total: number, fill: FillChunk, observe?: (chunk: Uint8Array) => void): Promise<void> {
    for (let off = 0; off < total; ) {
      const n = Math.min(this.chunkBytes, total - off);
      const dst = this.buffer().subarray(0, n);
      fill(dst, off);
      observe?.(dst);
      this.largestFill = Math.max(this.largestFill, n);
      // This buffer's previous write finished before the other buffer's write started.
      await this.drain();
      this.startWrite(dst);
      off += n;
    }
  }

  /** The chunk buffer not being written (allocated on first use: two at most). */
  private buffer(): Uint8Array {
    const i = this.nextBuffer;
    this.nextBuffer ^= 1;
    if (!this.buffers[i]) {
      this.buffers[i] = new Uint8Array(this.chunkBytes);
      this.bufferBytes += this.chunkBytes;
    }
    return this.buffers[i]!;
  }

  /** Overwrites bytes already written at `position` (after every queued write has landed). */
  async patch(position: number, bytes: Uint8Array): Promise<void> {
    await this.drain();
    if (position < 0 || position + bytes.byteLength > this.position) throw new Error(`${this.path}: patch [${position}, ${position + bytes.byteLength}) outside the ${this.position} bytes written`);
    await writeFully(this.handle(), bytes, position);
  }

  /** Waits for the last write, flushes the file to disk and closes it. */
  async close(): Promise<void> {
    try {
      await this.drain();
      await this.handle().sync();
    } finally {
      await this.abort();
    }
  }

  /** Closes without flushing (after an error); idempotent. */
  async abort(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    this.buffers = [];
    if (this.pending) await this.pending;
    this.pending = null;
    if (fh) await fh.close();
  }
}
