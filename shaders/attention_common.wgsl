// Shared part of the flash attention kernels (attention, attention_sg): the uniform block, the
// state and bias bindings, and the constants. Included as `//!include ../attention_common`; not a
// kernel by itself. Binding 1..4 (Q, K, V, O) are declared by each kernel (their element types
// differ); 5 (ST) and 6 (BIAS) here.
// Define: BIAS (0 none, 1 relative table [N, lq+lk-1], 2 full [N, lq, lk]).

struct Params {
  q_rows: u32,     // query rows (tokens) of this dispatch
  q_off: u32,      // their first token row inside the Q, O and state bindings
  q_pos: u32,      // position of the first one in its sequence (bias index)
  k_rows: u32,     // keys of this dispatch
  k_off: u32,      // their first token row inside the K and V bindings
  k_pos: u32,      // position of the first one in its sequence (bias index)
  k_valid: u32,    // keys k >= k_valid (of this dispatch) get the logit F32_MIN (umT5 masking)
  heads: u32,      // heads per token (row stride)
  flags: u32,
  bias_lq: u32,    // sequence lengths the bias is laid out for
  bias_lk: u32,
  scale_log2: f32, // softmax scale * log2(e): logits are kept in base 2
  st_stride: u32,  // floats per token row of the state (running max and sum of each head, padded)
  dim: u32,        // head dim D
  head0: u32,      // first head of this dispatch (the bias binding starts at this head's row)
  grid_heads: u32, // heads of this dispatch
  bias_stride: u32, // floats per head of the bias binding (rows may be padded)
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(5) var<storage, read_write> ST: array<f32>;
@group(0) @binding(6) var<storage, read> BIAS: array<f32>;

const BIAS_MODE: u32 = {{BIAS}}u;
const F32_MIN: f32 = -3.40282346638528859812e+38f;
const LOG2E: f32 = 1.44269504088896340736f;
