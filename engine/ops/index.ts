// Every kernel family's dispatch functions (one module per family; WGSL in shaders/).
export * from './elementwise.ts';
export * from './binary.ts';
export * from './norm.ts';
export * from './rope.ts';
export * from './embedding.ts';
export * from './matmul.ts';
export * from './attention.ts';
export * from './conv3d.ts';
export * from './layout.ts';
