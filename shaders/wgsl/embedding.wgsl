// embedding: out[t, :] = table[token_ids[t], :] for one row block of the table.
// The table may be split into row blocks (binding-size limits): one dispatch per block, each
// writing only the tokens whose id falls in its block.
//
// WT is the table's storage type; the host builds an f16-table variant by substituting
// `alias WT = f16;` (and `enable f16;`), and a quantised one as matmul.wgsl says. Values are
// widened to f32 on the way out.

struct P {
    n_tokens: u32,
    dim: u32,
    row_start: u32,
    block_rows: u32,
    ids_off: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

alias WT = f32;
fn wval(i: u32) -> f32 { return f32(w[i]); }

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> w: array<WT>;
@group(0) @binding(2) var<storage, read> plan: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n_tokens * p.dim {
        return;
    }
    let t = i / p.dim;
    let c = i % p.dim;
    let id = plan[p.ids_off + t];
    if id < p.row_start || id >= p.row_start + p.block_rows {
        return;
    }
    dst[i] = wval((id - p.row_start) * p.dim + c);
}
