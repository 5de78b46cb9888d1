// The one place that talks to Dawn: instance, adapter choice, device with the largest limits and the
// optional features the adapter has, error capture and device loss.
import { create, globals } from 'webgpu';

let globalsInstalled = false;

export interface DeviceOptions {
  /** Substring of the adapter's device name (Dawn's `adapter=` flag). Env: WAN_ADAPTER. */
  adapter?: string;
  /** Dawn backend: vulkan, metal, d3d12, d3d11, opengl, opengles, null. Env: WAN_BACKEND. */
  backend?: string;
  powerPreference?: GPUPowerPreference;
  /**
   * Pretend the adapter binds at most this many bytes per storage binding (and per buffer when
   * `maxBufferBytes` is not given). Tests use it to drive the large-tensor path on small data.
   */
  maxStorageBindingBytes?: number;
  /** Pretend buffers can be at most this large, forcing multi-buffer tensors. */
  maxBufferBytes?: number;
}

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  backend: string;
  features: string[];
  limits: Record<string, number>;
}

const LIMITS_WANTED = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxUniformBufferBindingSize',
  'maxBindGroups',
] as const;

const FEATURES_WANTED: GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'] as GPUFeatureName[];

/** A device and everything the engine needs to know about it. */
export class Gpu {
  /** The object `create()` returns must stay referenced, or Dawn aborts at the next submit. */
  readonly instance: GPU;
  readonly adapter: GPUAdapter;
  readonly device: GPUDevice;
  readonly summary: AdapterSummary;
  readonly hasF16: boolean;
  readonly hasSubgroups: boolean;
  readonly hasTimestamps: boolean;
  /** Effective per-binding limit (the adapter's, or a smaller forced one). Multiple of 256. */
  readonly maxBindingBytes: number;
  /** Effective per-buffer limit. */
  readonly maxBufferBytes: number;
  readonly storageAlign: number;
  readonly uniformAlign: number;
  readonly maxWorkgroupsPerDim: number;
  lostReason: string | null = null;
  /** Errors no error scope caught; thrown at the next sync point. */
  readonly uncaptured: string[] = [];

  private constructor(instance: GPU, adapter: GPUAdapter, device: GPUDevice, summary: AdapterSummary, opts: DeviceOptions) {
    this.instance = instance;
    this.adapter = adapter;
    this.device = device;
    this.summary = summary;
    const f = device.features;
    this.hasF16 = f.has('shader-f16');
    this.hasSubgroups = f.has('subgroups');
    this.hasTimestamps = f.has('timestamp-query');
    const lim = device.limits;
    this.storageAlign = lim.minStorageBufferOffsetAlignment;
    this.uniformAlign = lim.minUniformBufferOffsetAlignment;
    this.maxWorkgroupsPerDim = lim.maxComputeWorkgroupsPerDimension;
    const floor256 = (n: number) => Math.floor(n / 256) * 256;
    const binding = Math.min(lim.maxStorageBufferBindingSize, opts.maxStorageBindingBytes ?? Infinity);
    const buffer = Math.min(lim.maxBufferSize, opts.maxBufferBytes ?? Infinity);
    this.maxBindingBytes = floor256(binding);
    this.maxBufferBytes = floor256(buffer);
    if (this.maxBindingBytes < 256) throw new Error(`storage binding limit ${binding} is too small (need >= 256 bytes)`);
    device.lost.then((info) => {
      this.lostReason = `${info.reason}: ${info.message}`;
    });
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      this.uncaptured.push(ev.error.message);
    };
  }

  /** Creates the Dawn instance, picks the adapter, requests its best limits and features. */
  static async create(opts: DeviceOptions = {}): Promise<Gpu> {
    if (!globalsInstalled) {
      // GPUBufferUsage & co. are globals in browsers; Dawn for Node provides them separately.
      for (const [k, v] of Object.entries(globals)) if (!(k in globalThis)) (globalThis as any)[k] = v;
      globalsInstalled = true;
    }
    const adapterName = opts.adapter ?? process.env.WAN_ADAPTER;
    const backend = opts.backend ?? process.env.WAN_BACKEND;
    const flags: string[] = [];
    if (backend) flags.push(`backend=${backend}`);
    if (adapterName) flags.push(`adapter=${adapterName}`);
    const instance = create(flags);
    let adapter: GPUAdapter | null;
    try {
      adapter = await instance.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
    } catch (e) {
      throw new Error(`no WebGPU adapter${describeChoice(adapterName, backend)}: ${(e as Error).message ?? e}`);
    }
    if (!adapter) {
      throw new Error(
        `no WebGPU adapter${describeChoice(adapterName, backend)}. On a machine without a GPU install Mesa's lavapipe ` +
          `(Debian 12: mesa-vulkan-drivers from bookworm-backports; see README "Requirements").`,
      );
    }
    const requiredLimits: Record<string, number> = {};
    for (const k of LIMITS_WANTED) {
      const v = (adapter.limits as any)[k];
      if (typeof v === 'number') requiredLimits[k] = v;
    }
    const requiredFeatures = FEATURES_WANTED.filter((f) => adapter!.features.has(f));
    const device = await adapter.requestDevice({ requiredLimits, requiredFeatures, label: 'wan' });
    const info: any = adapter.info ?? {};
    const limits: Record<string, number> = {};
    for (const k in device.limits) {
      const v = (device.limits as any)[k];
      if (typeof v === 'number') limits[k] = v;
    }
    const summary: AdapterSummary = {
      vendor: String(info.vendor ?? ''),
      architecture: String(info.architecture ?? ''),
      device: String(info.device ?? ''),
      description: String(info.description ?? ''),
      backend: backend ?? 'default',
      features: [...adapter.features].map(String).sort(),
      limits,
    };
    return new Gpu(instance, adapter, device, summary, opts);
  }

  /** Throws if the device was lost or an uncaptured error is pending. Called at every engine entry. */
  check(what: string): void {
    if (this.lostReason !== null) {
      throw new Error(
        `WebGPU device lost (${this.lostReason}) before ${what}. Every tensor of this engine is gone; ` +
          `create a new engine (a driver reset or running out of GPU memory are the usual causes).`,
      );
    }
    if (this.uncaptured.length) {
      const msgs = this.uncaptured.splice(0);
      throw new Error(`WebGPU error before ${what}: ${msgs.join('\n')}`);
    }
  }

  destroy(): void {
    this.device.destroy();
  }
}

function describeChoice(adapter?: string, backend?: string): string {
  const parts: string[] = [];
  if (adapter) parts.push(`named like "${adapter}" (WAN_ADAPTER / --adapter)`);
  if (backend) parts.push(`on backend "${backend}" (WAN_BACKEND / --backend)`);
  return parts.length ? ' ' + parts.join(' ') : '';
}
