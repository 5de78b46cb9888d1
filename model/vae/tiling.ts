// Spatial tiling of the VAE decode (and encode: pixel tiles of tile * s, latents blended over the
// overlap in latent space, as diffusers' tiled_encode). Decode: the latent is cut into overlapping tiles (in latent units), every
// tile is decoded on its own (its own causal feature cache over all its frames), and the decoded tiles
// are blended linearly over the overlap in pixel space, as diffusers' AutoencoderKLWan.tiled_decode
// does (a tile fades in from weight 0 at its first overlapping pixel row / column; the ramps of two
// neighbours sum to 1, applied separably in y and x).
// Differences from diffusers' loop: tiles start at 0, stride, 2*stride, ... only while the previous
// tile does not reach the edge (diffusers starts one at every stride below the size, so a latent
// between stride and tile gets a second, redundant tile); one tile covering the latent is then the
// untiled decode bit for bit. The weights are the separable product ramp_y * ramp_x (diffusers
// blends in place tile after tile, so where four tiles meet the tile above already carries its left
// neighbour: same partition of unity, not separable).
// The middle attention block attends over the whole frame, so a tile never equals the same region
// of the untiled decode exactly; the README gives the measured difference.
import type { VaeVersion } from './index.ts';

export interface VaeTileOptions {
  /** Tile size in latent pixels (both axes). */
  tile: number;
  /** Distance between tile starts in latent pixels (tile - stride is the overlap; at least half a tile). */
  stride: number;
}

/**
 * The defaults: diffusers' 256-pixel tiles every 192 pixels (64 pixels blended), in latent units
 * (Wan2.1: 32 every 24; Wan2.2, 16x16 pixels per latent element: 16 every 12).
 */
export function defaultVaeTile(version: VaeVersion): VaeTileOptions {
  return version === '2.1' ? { tile: 32, stride: 24 } : { tile: 16, stride: 12 };
}

export function checkTile(t: VaeTileOptions): void {
  const ok = Number.isInteger(t.tile) && Number.isInteger(t.stride) && t.stride >= 1 && t.tile >= t.stride && t.tile <= 2 * t.stride;
  if (!ok) throw new Error(`VAE tiling: tile ${t.tile} / stride ${t.stride} must be integers with stride <= tile <= 2 * stride`);
}

/** Tile starts along an axis of `size` latent pixels: 0, stride, ... until a tile reaches the edge. */
export function tileStarts(size: number, t: VaeTileOptions): number[] {
  const starts = [0];
  while (starts[starts.length - 1] + t.tile < size) starts.push(starts[starts.length - 1] + t.stride);
  return starts;
}

/**
 * Blend weights along one axis for tile k, per pixel of the tile (its `len` pixels from pixel
 * starts[k] * scale): a ramp p / E up over the overlap with tile k-1 and 1 - p / E down over the
 * overlap with tile k+1, E = (tile - stride) * scale pixels.
 */
export function axisWeights(starts: number[], k: number, len: number, t: VaeTileOptions, scale: number): Float64Array {
  const w = new Float64Array(len).fill(1);
  const E = (t.tile - t.stride) * scale;
  if (E === 0) return w;
  if (k > 0) for (let p = 0; p < E; p++) w[p] *= p / E;
  if (k + 1 < starts.length) {
    const next = (starts[k + 1] - starts[k]) * scale; // where tile k+1 begins inside tile k
    for (let p = 0; p < E; p++) w[next + p] *= 1 - p / E;
  }
  return w;
}

/** Rows [i0, i1) and columns [j0, j1) of a host video [C, T, H, W]. */
export function cropFrames(x: Float32Array, shape: readonly number[], i0: number, i1: number, j0: number, j1: number): Float32Array {
  const [C, T, H, W] = shape;
  const h = i1 - i0;
  const w = j1 - j0;
  const out = new Float32Array(C * T * h * w);
  for (let ct = 0; ct < C * T; ct++)
    for (let i = 0; i < h; i++) {
      const src = (ct * H + i0 + i) * W + j0;
      out.set(x.subarray(src, src + w), (ct * h + i) * w);
    }
  return out;
}

/**
 * Adds weight_y[i] * weight_x[j] * tile into rows [y0, ...) and columns [x0, ...) of a host video
 * [C, T, H, W]. With both weights 1 the tile values are stored as they are (one tile: exact).
 */
export function blendTile(dst: Float32Array, shape: readonly number[], tile: Float32Array, tileShape: readonly number[], y0: number, x0: number, wy: Float64Array, wx: Float64Array): void {
  const [C, T, H, W] = shape;
  const [, , h, w] = tileShape;
  for (let ct = 0; ct < C * T; ct++)
    for (let i = 0; i < h; i++) {
      const src = (ct * h + i) * w;
      const at = (ct * H + y0 + i) * W + x0;
      const a = wy[i];
      if (a === 0) continue;
      for (let j = 0; j < w; j++) {
        const b = a * wx[j];
        if (b === 1) dst[at + j] = tile[src + j];
        else if (b !== 0) dst[at + j] += b * tile[src + j];
      }
    }
}
