// Flattened workgroup index: large dispatches are spread over x and y (65535 per dimension).
fn flat_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}
