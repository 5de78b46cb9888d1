// Decodes an MP4 back to RGB frames (tests and `wan verify` of written videos): demux with
// @napi-rs/webcodecs' Mp4Demuxer, decode with its VideoDecoder.
import { Mp4Demuxer, VideoDecoder, type EncodedVideoChunk, type VideoFrame } from '@napi-rs/webcodecs';
import type { Frames } from './mp4.ts';

export interface DecodedVideo extends Frames {
  /** Frame rate from the container (frames / duration). */
  fps: number;
}

export async function readMp4(path: string): Promise<DecodedVideo> {
  const chunks: EncodedVideoChunk[] = [];
  let err: Error | null = null;
  const demuxer = new Mp4Demuxer({ videoOutput: (c) => chunks.push(c), error: (e) => (err = e) });
  await demuxer.load(path);
  const config = demuxer.videoDecoderConfig;
  const duration = demuxer.duration;
  if (!config) throw new Error(`${path}: no video track`);
  await demuxer.demuxAsync();
  demuxer.close();
  if (err) throw new Error(`${path}: ${(err as Error).message}`);
  const frames: VideoFrame[] = [];
  const decoder = new VideoDecoder({ output: (f) => frames.push(f), error: (e) => (err = e) });
  decoder.configure(config as never);
  for (const c of chunks) decoder.decode(c);
  await decoder.flush();
  decoder.close();
  if (err) throw new Error(`${path}: ${(err as Error).message}`);
  if (frames.length === 0) throw new Error(`${path}: no frames decoded`);
  const width = frames[0].displayWidth;
  const height = frames[0].displayHeight;
  const rgb = new Uint8Array(frames.length * width * height * 3);
  const rgba = new Uint8Array(width * height * 4);
  for (let t = 0; t < frames.length; t++) {
    await frames[t].copyTo(rgba, { format: 'RGBA' } as never);
    for (let p = 0; p < width * height; p++) {
      rgb.set(rgba.subarray(p * 4, p * 4 + 3), (t * width * height + p) * 3);
    }
    frames[t].close();
  }
  return { rgb, frames: frames.length, width, height, fps: duration ? frames.length / (duration / 1e6) : NaN };
}
