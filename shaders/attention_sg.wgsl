// Flash attention (online softmax) as a subgroup register kernel: the CPU (lavapipe) variant.
// One workgroup is one subgroup of 8 lanes (chosen only when the adapter's subgroups have at least 8
// lanes, so that a workgroup of 8 is a single subgroup). No workgroup memory, no barriers: lanes
// exchange values with subgroupShuffle only, so on lavapipe (a subgroup = one SIMD vector) the tile
// stays in vector registers.
// A workgroup owns TM query rows of one head. Keys go in blocks of KB = 8*TN:
//   logits  lane l owns keys 8j + l (j < TN) of the block; per step of 32 head dims each lane loads
//           dims 4l..4l+3 of every row, and the lanes take turns sharing theirs (shuffle from lane x)
//           while every lane multiplies them with its keys' dims 4x..4x+3;
//   softmax block max over the lanes (subgroupMax), running max/sum update, p = exp2(t - max);
//   p V     key by key, its p values (held by the lane that owns the key) are shuffled to all lanes,
//           and lane l accumulates head columns 4(l + 8c)..+3 (c < CV) of the TM rows.
// State (running max, running sum, unnormalised output) can continue from / stop at a key window
// boundary: flags bit 0 = first key window (start fresh), bit 1 = last (normalise and finish).
// The head dim is a uniform (multiple of 4, at most 32*CV), so one pipeline serves a range of dims.
// Defines (the unrolled code comes from engine/ops/attention.ts, sgAttentionDefines):
//   QKV / UNPACK4  the q, k, v storage element (vec4<f32>, or vec2<u32> = 4 packed f16 / bf16) and
//                  its conversion to vec4<f32> (arithmetic is f32 either way);
//   TM, KB         query rows per workgroup, keys per block;
//   BIAS           0 none, 1 relative table [N, lq+lk-1] indexed by key - query + lq - 1, 2 full
//                  [N, lq, lk] (head rows bias_stride apart);
//   SETUP (row offsets, state), KEYS (per block), LOGITS, SOFTMAX, PV, FINISH: the unrolled code.
// Note: every `var` in a loop body is given an explicit initializer: on this Dawn + lavapipe stack a
// loop-local `var` without one is NOT re-zeroed on each iteration.
enable subgroups;
//!include index
//!include ../attention_common

@group(0) @binding(1) var<storage, read> Q: array<{{QKV}}>;
@group(0) @binding(2) var<storage, read> K: array<{{QKV}}>;
@group(0) @binding(3) var<storage, read> V: array<{{QKV}}>;
@group(0) @binding(4) var<storage, read_write> O: array<vec4<f32>>;

// 4 consecutive q/k/v elements as f32 (f32 storage, or 4 packed halves: f16 / bf16).
fn ld4(w: {{QKV}}) -> vec4<f32> {
  return {{UNPACK4}};
}

// Natural-log bias of head n (of this dispatch's head range), query position qpos and key position
// kpos, in base 2.
fn bias_at(n: u32, qpos: u32, kpos: u32) -> f32 {
  if (BIAS_MODE == 1u) {
    return LOG2E * BIAS[n * P.bias_stride + kpos + P.bias_lq - 1u - qpos];
  }
  if (BIAS_MODE == 2u) {
    return LOG2E * BIAS[n * P.bias_stride + qpos * P.bias_lk + kpos];
  }
  return 0.0;
}

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32) {
  let flat = flat_workgroup(wid, nwg);
  // Head-major order: consecutive workgroups share a head, so its keys and values stay in cache
  // (row-major order streamed every head's K/V between two visits: ~25% slower at 4096 keys).
  let blocks = (P.q_rows + {{TM}}u - 1u) / {{TM}}u;
  if (blocks == 0u || flat >= blocks * P.grid_heads) { return; }
  let n = P.head0 + flat / blocks;
  let row0 = (flat % blocks) * {{TM}}u;
  let d4 = P.dim >> 2u;              // vec4s per head row
  let stride4 = P.heads * d4;        // vec4s per token row
  let head4 = n * d4;
  let first = (P.flags & 1u) != 0u;
  let last = (P.flags & 2u) != 0u;
  // The 8 invocations must be lanes 0..7 of one subgroup; otherwise the running sums start as NaN:
  // a loud failure, never a silently wrong result.
  let lane_hi = subgroupMax(lane);
  let lane_lo = subgroupMin(lane);
  let l_init = select(bitcast<f32>(0x7fc00000u | (P.flags & 0u)), 0.0, lane_hi == 7u && lane_lo == 0u);
{{SETUP}}
  for (var kb = 0u; kb < P.k_rows; kb += {{KB}}u) {
{{KEYS}}
{{LOGITS}}
{{SOFTMAX}}
{{PV}}
  }
{{FINISH}}
}
