// Flash attention (online softmax) as a subgroup register kernel: the CPU (lavapipe) variant.
// One workgroup is one subgroup of 8 lanes (chosen only when the adapter's subgroups are at least 8
// lanes; a workgroup of 8 is then a single subgroup). No workgroup memory, no barriers: lanes share
// values with subgroupBroadcast only, so on lavapipe (a subgroup = one SIMD vector) everything stays
// in vector registers.
// A workgroup owns TM query rows of one head. Keys go in blocks of 8*TN: lane l owns keys 8j + l
// (j < TN) of the block and computes their logits for the TM rows (each lane loads one of every 8
// head dims of the rows, which are broadcast); then each key's probabilities are broadcast from its
// lane while every lane accumulates its head columns 8c + l (c < D/8) of the TM rows.
// State (running max, running sum, unnormalised output) can continue from / stop at a key window
// boundary: flags bit 0 = first key window (start fresh), bit 1 = last (normalise and finish).
// Defines (the unrolled code comes from engine/ops/attention.ts, sgAttentionDefines):
//   D head dim (multiple of 8), TM rows, KB = 8*TN keys per block, BIAS 0 none / 1 relative table
//   [N, lq+lk-1] indexed by key - query + lq - 1 / 2 full [N, lq, lk];
//   SETUP (row offsets, state), LOGITS (one 8-dim step of the logits), SOFTMAX, PV (acc += p V), FINISH.
enable subgroups;
//!include index

struct Params {
  q_rows: u32,     // query rows (tokens) of this dispatch
  q_off: u32,      // their first token row inside the Q, O and state bindings
  q_pos: u32,      // position of the first one in its sequence (bias index)
  k_rows: u32,     // keys of this dispatch
  k_off: u32,      // their first token row inside the K and V bindings
  k_pos: u32,      // position of the first one in its sequence (bias index)
  k_valid: u32,    // keys k >= k_valid (of this dispatch) get the logit F32_MIN (umT5 masking)
  heads: u32,
  flags: u32,
  bias_lq: u32,    // sequence lengths the bias is laid out for
  bias_lk: u32,
  scale_log2: f32, // softmax scale * log2(e): logits are kept in base 2
  st_stride: u32,  // floats per token row of the state (running max and sum of each head, padded)
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> K: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> V: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> O: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> ST: array<f32>;
@group(0) @binding(6) var<storage, read> BIAS: array<f32>;

const D: u32 = {{D}}u;
const BIAS_MODE: u32 = {{BIAS}}u;
const F32_MIN: f32 = -3.40282346638528859812e+38f;
const LOG2E: f32 = 1.44269504088896340736f;

// Natural-log bias of query position qpos and key position kpos, in base 2.
fn bias_at(n: u32, qpos: u32, kpos: u32) -> f32 {
  if (BIAS_MODE == 1u) {
    return LOG2E * BIAS[n * (P.bias_lq + P.bias_lk - 1u) + kpos + P.bias_lq - 1u - qpos];
  }
  if (BIAS_MODE == 2u) {
    return LOG2E * BIAS[(n * P.bias_lq + qpos) * P.bias_lk + kpos];
  }
  return 0.0;
}

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32) {
  let flat = flat_workgroup(wid, nwg);
  let n = flat % P.heads;
  let row0 = (flat / P.heads) * {{TM}}u;
  if (row0 >= P.q_rows) { return; }
  let stride = P.heads * D;
  let head = n * D;
  let first = (P.flags & 1u) != 0u;
  let last = (P.flags & 2u) != 0u;
{{SETUP}}
  for (var kb = 0u; kb < P.k_rows; kb += {{KB}}u) {
{{KEYS}}
    for (var d0 = 0u; d0 < D; d0 += 8u) {
{{LOGITS}}
    }
{{SOFTMAX}}
{{PV}}
  }
{{FINISH}}
}
