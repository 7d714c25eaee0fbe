//! Attention's experimental entries (attention.cu; written without a GPU, since passed on an
//! H200 with the tiny test models) against the verified
//! ones on the same cache and step: `rope-in-attention` (`attention_store_rope`, the split
//! and the split-with-combine ones) against `rope` on q and k then `attention_store` (or the
//! split store and `attention_combine`), and `inline-combine` (`attention_split_last`,
//! `attention_split_store_last`) against the split kernel then `attention_combine`. Outputs
//! and caches bit for bit, the combine counters back to zero; the verified route itself
//! against a float64 attention over the rotated q and k.

use dlp_cuda::attention_splits;

use crate::common::{bits, random_vec, to_bf16, worst, Runs, BLOCK};
use crate::emu::{arg, dev, module, Arg, Module, Order, ORDERS};

/// Threads of an attention block (`ATTN_THREADS` in launch.rs).
const ATTN_THREADS: u32 = 128;

/// A decode step: T tokens, each alone in its cache slot at its position; caches `[slots,
/// capacity, kv_dim]` filled at every position (the step's own are overwritten by the store).
#[derive(Clone)]
struct Step {
    n_heads: i32,
    n_kv_heads: i32,
    head_dim: i32,
    capacity: i32,
    /// Sliding window in positions (0: the whole prefix).
    window: i32,
    slots: Vec<u32>,
    positions: Vec<u32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    k_cache: Vec<f32>,
    v_cache: Vec<f32>,
    k_cache16: Vec<u16>,
    v_cache16: Vec<u16>,
    cos_sin: Vec<f32>,
}

impl Step {
    fn new(heads: (usize, usize, usize), window: i32, positions: &[u32]) -> Step {
        let (n_heads, n_kv_heads, head_dim) = heads;
        let capacity = 64usize;
        let t = positions.len();
        let kv_dim = n_kv_heads * head_dim;
        let cache = random_vec(t * capacity * kv_dim, 31);
        let bits16 = |v: &[f32]| v.iter().map(|x| to_bf16(*x).1).collect();
        let half = head_dim / 2;
        let mut cos_sin = Vec::with_capacity(capacity * half * 2);
        for p in 0..capacity {
            for i in 0..half {
                let a = p as f64 * 10_000f64.powf(-2.0 * i as f64 / head_dim as f64);
                cos_sin.extend([a.cos() as f32, a.sin() as f32]);
            }
        }
        let v_cache = random_vec(t * capacity * kv_dim, 32);
        Step {
            n_heads: n_heads as i32,
            n_kv_heads: n_kv_heads as i32,
            head_dim: head_dim as i32,
            capacity: capacity as i32,
            window,
            slots: (0..t as u32).rev().collect(),
            positions: positions.to_vec(),
            q: random_vec(t * n_heads * head_dim, 33),
            k: random_vec(t * kv_dim, 34),
            v: random_vec(t * kv_dim, 35),
            k_cache16: bits16(&cache),
            v_cache16: bits16(&v_cache),
            k_cache: cache,
            v_cache,
            cos_sin,
        }
    }

    fn t(&self) -> usize {
        self.positions.len()
    }

    fn out_len(&self) -> usize {
        self.t() * (self.n_heads * self.head_dim) as usize
    }
}

/// The pointers and values of `ATTN_PARAMS` for `s` (bf16 caches with `bf16`).
struct Params {
    ptrs: [u64; 5],
    ints: [i32; 5],
    scale: f32,
}

impl Params {
    fn new(s: &mut Step, bf16: bool) -> Params {
        let (kc, vc) = if bf16 {
            (dev(&mut s.k_cache16), dev(&mut s.v_cache16))
        } else {
            (dev(&mut s.k_cache), dev(&mut s.v_cache))
        };
        Params {
            ptrs: [
                dev(&mut s.q),
                kc,
                vc,
                dev(&mut s.slots),
                dev(&mut s.positions),
            ],
            ints: [s.n_heads, s.n_kv_heads, s.head_dim, s.capacity, s.window],
            scale: 1.0 / (s.head_dim as f32).sqrt(),
        }
    }

    /// `q, k_cache, v_cache, kv_slots, positions, n_heads, n_kv_heads, head_dim, capacity,
    /// scale, window`.
    fn args(&self) -> Vec<Arg> {
        let (p, i) = (&self.ptrs, &self.ints);
        let mut a: Vec<Arg> = p.iter().map(arg).collect();
        a.extend(i[..4].iter().map(arg));
        a.push(arg(&self.scale));
        a.push(arg(&i[4]));
        a
    }
}

/// What a route leaves: the output `[T, n_heads * head_dim]` and the caches, as bits.
#[derive(PartialEq)]
struct RouteOutputs(Vec<u32>, Vec<u32>, Vec<u32>);

impl RouteOutputs {
    fn of(out: &[f32], s: &Step, bf16: bool) -> RouteOutputs {
        let (k, v) = if bf16 {
            let w = |c: &[u16]| c.iter().map(|b| *b as u32).collect();
            (w(&s.k_cache16), w(&s.v_cache16))
        } else {
            (bits(&s.k_cache), bits(&s.v_cache))
        };
        RouteOutputs(bits(out), k, v)
    }
}

/// `rope` on q (n_heads) and k (n_kv_heads) in place, as ops.rs launches it (grid_1d).
fn rope(m: &Module, s: &mut Step) -> Result<(), String> {
    let (pc, pp, t) = (dev(&mut s.cos_sin), dev(&mut s.positions), s.t() as i32);
    for (x, heads) in [(dev(&mut s.q), s.n_heads), (dev(&mut s.k), s.n_kv_heads)] {
        let n = s.t() * (heads * s.head_dim / 2) as usize;
        let grid = (n.div_ceil(BLOCK as usize).clamp(1, 8192) as u32, 1, 1);
        let a = [
            arg(&x),
            arg(&pc),
            arg(&pp),
            arg(&t),
            arg(&heads),
            arg(&s.head_dim),
        ];
        m.launch("rope", grid, BLOCK, 0, &a)?;
    }
    Ok(())
}

/// Float64 attention of `s` (q and k already rotated; caches f32, the store's positions
/// already written) over each token's window of positions: out `[T, n_heads * head_dim]`.
fn attention_ref(s: &Step) -> Vec<f64> {
    attention_ref_scored(s, false, None)
}

/// [`attention_ref`] over the caches as stored (the bf16 ones decoded, with `bf16`), each
/// score `q.k * scale` soft-capped, `cap * tanh(s / cap)`, where `scored` gives
/// `(scale, cap)` (Gemma 2's), else `q.k / sqrt(head_dim)`.
fn attention_ref_scored(s: &Step, bf16: bool, scored: Option<(f64, f64)>) -> Vec<f64> {
    let (h, kvh, d) = (
        s.n_heads as usize,
        s.n_kv_heads as usize,
        s.head_dim as usize,
    );
    let (kv_dim, cap) = (kvh * d, s.capacity as usize);
    let (k_cache, v_cache): (Vec<f32>, Vec<f32>) = match bf16 {
        true => {
            let f = |c: &[u16]| {
                c.iter()
                    .map(|b| half::bf16::from_bits(*b).to_f32())
                    .collect()
            };
            (f(&s.k_cache16), f(&s.v_cache16))
        }
        false => (s.k_cache.clone(), s.v_cache.clone()),
    };
    let scale = scored.map_or(1.0 / (d as f64).sqrt(), |x| x.0);
    let mut out = vec![0f64; s.out_len()];
    for t in 0..s.t() {
        let (slot, pos) = (s.slots[t] as usize, s.positions[t] as usize);
        let start = match s.window {
            0 => 0,
            w => (pos + 1).saturating_sub(w as usize),
        };
        for head in 0..h {
            let g = head / (h / kvh);
            let q = &s.q[(t * h + head) * d..][..d];
            let row = |c: &[f32], p: usize| c[(slot * cap + p) * kv_dim + g * d..][..d].to_vec();
            let scores: Vec<f64> = (start..=pos)
                .map(|p| {
                    let kr = row(&k_cache, p);
                    let x = q
                        .iter()
                        .zip(&kr)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
                        * scale;
                    scored.map_or(x, |(_, c)| c * (x / c).tanh())
                })
                .collect();
            let mx = scores.iter().cloned().fold(f64::MIN, f64::max);
            let w: Vec<f64> = scores.iter().map(|x| (x - mx).exp()).collect();
            let sum: f64 = w.iter().sum();
            for (p, wp) in (start..=pos).zip(&w) {
                let vr = row(&v_cache, p);
                for i in 0..d {
                    out[(t * h + head) * d + i] += wp / sum * vr[i] as f64;
                }
            }
        }
    }
    out
}

/// A route's output `[T, n_heads * head_dim]`, the split partials `[T, n_heads, splits,
/// head_dim + 2]` and the inline combine's counters `[T, n_heads]` (zero before a launch).
struct Buffers {
    out: Vec<f32>,
    part: Vec<f32>,
    counts: Vec<u32>,
}

impl Buffers {
    fn new(s: &Step, splits: usize) -> Buffers {
        let (h, t, d) = (s.n_heads as usize, s.t(), s.head_dim as usize);
        Buffers {
            out: vec![f32::NAN; s.out_len()],
            part: vec![f32::NAN; t * h * splits * (d + 2)],
            counts: vec![0u32; t * h],
        }
    }

    /// The output, once the inline combine has left its counters zero (as it must).
    fn finish(self) -> Result<Vec<f32>, String> {
        if self.counts.iter().any(|c| *c != 0) {
            return Err(format!(
                "the combine counters are {:?} after the launch",
                self.counts
            ));
        }
        Ok(self.out)
    }
}

/// `attention_combine` of the partials at `pp` into the output at `po`, grid (n_heads, T).
fn combine(m: &Module, s: &Step, splits: usize, pp: &u64, po: &u64) -> Result<(), String> {
    let (h, d, ss) = (s.n_heads, s.head_dim, splits as i32);
    let c = [arg(pp), arg(&h), arg(&d), arg(&ss), arg(po)];
    m.launch(
        "attention_combine",
        (h as u32, s.t() as u32, 1),
        ATTN_THREADS,
        0,
        &c,
    )
}

/// A store entry on `s` (grid (n_heads, T, splits), as attention.rs launches it):
/// `attention_store` (splits 1) or `attention_split_store` then `attention_combine`; with
/// `last`, the `_last` entry that combines inside (`inline-combine`); with `rope`, the
/// `_rope` entries that rotate the unrotated q and k as they read them (`rope-in-attention`).
fn store_attention(
    m: &Module,
    s: &mut Step,
    bf16: bool,
    splits: usize,
    rope: bool,
    last: bool,
) -> Result<Vec<f32>, String> {
    let mut b = Buffers::new(s, splits);
    let (mut k, mut v) = (s.k.clone(), s.v.clone());
    let pcs = dev(&mut s.cos_sin);
    let p = Params::new(s, bf16);
    let (pk, pv, pc) = (dev(&mut k), dev(&mut v), dev(&mut b.counts));
    let (pp, po) = (dev(&mut b.part), dev(&mut b.out));
    let mut a = p.args();
    let name = if splits == 1 {
        a.extend([arg(&po), arg(&pk), arg(&pv)]);
        "attention_store"
    } else if last {
        a.extend([arg(&pp), arg(&pk), arg(&pv), arg(&pc), arg(&po)]);
        "attention_split_store_last"
    } else {
        a.extend([arg(&pp), arg(&pk), arg(&pv)]);
        "attention_split_store"
    };
    if rope {
        a.push(arg(&pcs));
    }
    let (r, sfx) = (
        if rope { "_rope" } else { "" },
        if bf16 { "_bf16" } else { "" },
    );
    let grid = (s.n_heads as u32, s.t() as u32, splits as u32);
    m.launch(&format!("{name}{r}{sfx}"), grid, ATTN_THREADS, 0, &a)?;
    if splits > 1 && !last {
        combine(m, s, splits, &pp, &po)?;
    }
    b.finish()
}

/// `inline-combine` on a cache the step was stored into first (`kv_store`, as without
/// `fused-kv-store`): `attention_split_last` (q and k rotated beforehand).
fn split_last_after_store(
    m: &Module,
    s: &mut Step,
    bf16: bool,
    splits: usize,
) -> Result<Vec<f32>, String> {
    let sfx = if bf16 { "_bf16" } else { "" };
    let kv_dim = s.n_kv_heads * s.head_dim;
    let mut b = Buffers::new(s, splits);
    let (pk, pv) = (dev(&mut s.k), dev(&mut s.v));
    let p = Params::new(s, bf16);
    let [_, kc, vc, slots, positions] = &p.ptrs;
    let store = [
        arg(&pk),
        arg(&pv),
        arg(kc),
        arg(vc),
        arg(slots),
        arg(positions),
        arg(&kv_dim),
        arg(&s.capacity),
    ];
    m.launch(
        &format!("kv_store{sfx}"),
        (s.t() as u32, 1, 1),
        BLOCK,
        0,
        &store,
    )?;
    let (pp, pc, po) = (dev(&mut b.part), dev(&mut b.counts), dev(&mut b.out));
    let mut a = p.args();
    a.extend([arg(&pp), arg(&pc), arg(&po)]);
    let grid = (s.n_heads as u32, s.t() as u32, splits as u32);
    m.launch(
        &format!("attention_split_last{sfx}"),
        grid,
        ATTN_THREADS,
        0,
        &a,
    )?;
    b.finish()
}

fn case(heads: (usize, usize, usize), window: i32, bf16: bool, order: Order) -> Result<(), String> {
    let m = module("attention", &[], order)?;
    let rope_m = module("rope", &[], order)?;
    let step = Step::new(heads, window, &[5, 20, 63]);
    let split_n = attention_splits(step.capacity as usize, step.t(), 16);
    for splits in [1, split_n] {
        // The verified route, and (f32 cache) against float64.
        let mut want_s = step.clone();
        rope(&rope_m, &mut want_s)?;
        let want = store_attention(&m, &mut want_s, bf16, splits, false, false)?;
        if !bf16 {
            let r = attention_ref(&want_s);
            let e = worst(&want, &r);
            if e > 1e-5 {
                return Err(format!(
                    "attention_store (splits {splits}): {e:.2e} from float64"
                ));
            }
        }
        let want = RouteOutputs::of(&want, &want_s, bf16);
        // rope-in-attention, with the combine as a launch and (splits > 1) inside.
        for last in [false, true] {
            if last && splits == 1 {
                continue;
            }
            let mut s = step.clone();
            let got = store_attention(&m, &mut s, bf16, splits, true, last)?;
            if RouteOutputs::of(&got, &s, bf16) != want {
                return Err(format!(
                    "rope-in-attention (splits {splits}, inline combine {last}) differs"
                ));
            }
        }
        if splits > 1 {
            // inline-combine alone: roped beforehand, then the `_store_last` entry.
            let mut s = step.clone();
            rope(&rope_m, &mut s)?;
            let got = store_attention(&m, &mut s, bf16, splits, false, true)?;
            if RouteOutputs::of(&got, &s, bf16) != want {
                return Err(format!("inline-combine (splits {splits}) differs"));
            }
            let mut s = step.clone();
            rope(&rope_m, &mut s)?;
            let got = split_last_after_store(&m, &mut s, bf16, splits)?;
            if RouteOutputs::of(&got, &s, bf16) != want {
                return Err(format!(
                    "inline-combine after kv_store (splits {splits}) differs"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn attention_entries_match_the_verified_kernels() {
    let mut runs = Runs::default();
    // (n_heads, n_kv_heads, head_dim); tokens at positions 5, 20 and 63 (of 64).
    for heads in [(4, 2, 16), (6, 3, 34), (2, 2, 64)] {
        for window in [0, 8] {
            for bf16 in [false, true] {
                for (name, order) in ORDERS {
                    let label = format!("heads {heads:?} window {window} kv_bf16={bf16} {name}");
                    runs.check(label, case(heads, window, bf16, order));
                }
            }
        }
    }
    runs.finish();
}

/// `attention_softcap` (Gemma 2's soft-capped scores with a scale of their own; not yet run on
/// a GPU) on f32 and bf16 caches, with and without a window, head_dim 16 and 256, in every
/// block order, against float64 attention with the same cap and scale; the cap is checked to
/// move that reference, so a kernel that ignored it would fail.
#[test]
fn softcap_attention_matches_float64() {
    let (scale, cap) = (0.3f32, 1.5f32);
    let mut runs = Runs::default();
    for heads in [(4, 2, 16), (2, 1, 256)] {
        for window in [0, 8] {
            for bf16 in [false, true] {
                for (name, order) in ORDERS {
                    let label = format!("heads {heads:?} window {window} kv_bf16={bf16} {name}");
                    runs.check(
                        label,
                        softcap_case(heads, window, bf16, order, (scale, cap)),
                    );
                }
            }
        }
    }
    runs.finish();
}

fn softcap_case(
    heads: (usize, usize, usize),
    window: i32,
    bf16: bool,
    order: Order,
    (scale, cap): (f32, f32),
) -> Result<(), String> {
    let m = module("attention", &[], order)?;
    let mut s = Step::new(heads, window, &[5, 20, 63]);
    let mut out = vec![f32::NAN; s.out_len()];
    let mut p = Params::new(&mut s, bf16);
    p.scale = scale;
    let po = dev(&mut out);
    let mut a = p.args();
    a.extend([arg(&po), arg(&cap)]);
    let name = if bf16 {
        "attention_softcap_bf16"
    } else {
        "attention_softcap"
    };
    m.launch(
        name,
        (s.n_heads as u32, s.t() as u32, 1),
        ATTN_THREADS,
        0,
        &a,
    )?;
    let want = attention_ref_scored(&s, bf16, Some((scale as f64, cap as f64)));
    let uncapped = attention_ref_scored(&s, bf16, Some((scale as f64, 1e12)));
    let moved = want
        .iter()
        .zip(&uncapped)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    if moved < 1e-3 {
        return Err(format!("the cap moves the reference by only {moved:.2e}"));
    }
    match worst(&out, &want) {
        e if e > 1e-5 => Err(format!("{name}: {e:.2e} from float64")),
        _ => Ok(()),
    }
}
