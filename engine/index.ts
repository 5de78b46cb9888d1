// Public surface of the tensor runtime.
export { Engine, Uniforms, type Dispatch, type EngineStats } from './engine.ts';
export { Gpu, type DeviceOptions, type AdapterSummary } from './device.ts';
export { Tensor, Storage, numelOf } from './tensor.ts';
export { type DType, DTYPES, dtypeBytes, encode, decode, f32ToBf16Bits, bf16BitsToF32 } from './dtype.ts';
export { planWindows, wholeBinding, type Binding, type Window } from './windows.ts';
export { DeviceMemoryError, type MemoryStats } from './pool.ts';
export * as ops from './ops/index.ts';
export { fixedSubgroupSize, subgroupSizeRange } from './subgroups.ts';
