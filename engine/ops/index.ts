export { activation, silu, geluTanh, cast, type Activation } from './elementwise.ts';
