// Every kernel family's dispatch functions (one module per family; WGSL in shaders/).
export * from './elementwise.ts';
