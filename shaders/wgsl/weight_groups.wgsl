// Weights in scale-offset groups (engine/src/weight_groups.rs): what a GGUF's quantised
// tensors are kept as. Not a shader of its own: the host puts this reader in place of a
// weight-reading shader's `fn wval` line (and types its weight array `w` as u32), with the
// layout's constants substituted. A group of GS values is GW words: a (f32 bits), b (where
// GH = 1), then the codes, GB bits each from the lowest; value = a * f32(q - GZ) - b, as the
// CPU's dequantisation computes it (unless a driver fuses the two into one FMA, which WGSL
// cannot forbid: then one rounding apart for the kinds with a min).

const GB: u32 = 4u;
const GS: u32 = 32u;
const GH: u32 = 1u;
const GZ: i32 = 0;
const GW: u32 = 1u + GH + GS * GB / 32u;

fn wval(i: u32) -> f32 {
    let g = (i / GS) * GW;
    let bit = (i % GS) * GB;
    let code = (w[g + 1u + GH + bit / 32u] >> (bit % 32u)) & ((1u << GB) - 1u);
    let v = bitcast<f32>(w[g]) * f32(i32(code) - GZ);
    if GH == 1u {
        return v - bitcast<f32>(w[g + 1u]);
    }
    return v;
}
