// rope: rotary embedding in place, HF rotate-half layout; pair (i, i + head_dim/2) of every head
// rotates by the angle of the token's position in the precomputed cos/sin table.

struct P {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    pos_off: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> cos_sin: array<f32>;
@group(0) @binding(3) var<storage, read> plan: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let hh = p.head_dim / 2u;
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n_tokens * p.n_heads * hh {
        return;
    }
    let per_tok = p.n_heads * hh;
    let t = i / per_tok;
    let h = (i % per_tok) / hh;
    let j = i % hh;
    let pos = plan[p.pos_off + t];
    let c = cos_sin[(pos * hh + j) * 2u];
    let s = cos_sin[(pos * hh + j) * 2u + 1u];
    let base = (t * p.n_heads + h) * p.head_dim;
    let a = x[base + j];
    let b = x[base + j + hh];
    x[base + j] = a * c - b * s;
    x[base + j + hh] = b * c + a * s;
}
