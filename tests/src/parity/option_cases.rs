//! The case sets for backend options (the CUDA and wgpu switches): each a filter or
//! extension of the table in [`super::cases`], with the rounding or shapes its option needs.

use dlp_engine::backend::ResidualSite;
use dlp_engine::NO_ADAPTER;

use super::cases::{attn, attn_window, case, cases, lora, matmul_id, weight_cases};
use super::cases::{Mixture, Op, ParityCase, REDUCTION_TOL};

/// The f16-weight cases: matmul (gemv and both tiled variants, odd K so rows of f16 straddle
/// 4-byte words, odd sizes so buffers need padding), logits and embedding, weights drawn as f16.
pub fn f16_weight_cases() -> Vec<ParityCase> {
    let matmuls = [
        (1, 7, 11, false),
        (4, 301, 9, true),
        (5, 7, 11, true),
        (17, 65, 131, false),
        (67, 129, 70, true),
    ];
    let logits: [(usize, usize, usize, &[u32]); 3] = [
        (19, 37, 5, &[4, 0, 2]),
        (64, 301, 3, &[2]),
        (576, 1001, 6, &[0, 1, 2, 3, 4, 5]),
    ];
    let embeddings = [(37, 19, 5), (1001, 7, 33)];
    weight_cases(&embeddings, &matmuls, &logits, |id, op, tol| ParityCase {
        f16_weights: true,
        ..case(format!("f16w {id}"), op, tol)
    })
}

/// [`f16_weight_cases`] with the weights drawn as bf16 values instead, for a backend that
/// stores weights as bf16 (CUDA's `bf16_weights`): both sides compute on the same values, so
/// the f32 bounds hold.
pub fn bf16_weight_cases() -> Vec<ParityCase> {
    f16_weight_cases()
        .into_iter()
        .map(|c| ParityCase {
            id: c.id.replacen("f16w", "bf16w", 1),
            f16_weights: false,
            bf16_weights: true,
            ..c
        })
        .collect()
}

/// The fused `linears` cases' mixture: tokens alternating between two segments, one of
/// slots 0 and 2 (weight entries), the other of slot 2 alone, over slots of `ranks` (a 0: the
/// slot does not target the module).
fn two_segment_mix(rows: usize, k: usize, ranks: &[u32]) -> Mixture {
    Mixture {
        in_dim: k,
        out_dim: 0,
        ranks: ranks.to_vec(),
        segment_of_token: (0..rows as u32).map(|t| t % 2).collect(),
        k: 2,
        slots: vec![0, 2, 2, NO_ADAPTER],
    }
}

/// The flags of a `linears` case's id: `,bias`, `,lora`, `,bare=[..]` where they apply.
fn linears_flags(bias: bool, lora: bool, bare: &[usize]) -> String {
    let mut f = String::new();
    if bias {
        f += ",bias";
    }
    if lora {
        f += ",lora";
    }
    if !bare.is_empty() {
        f += &format!(",bare={bare:?}");
    }
    f
}

/// The decode matvec's shapes on bf16 weights (`--cuda-experimental decode-matvec`): every row
/// bucket (1, 2, 3-4, 5-8 rows), widths that are multiples of 8 (its 16-byte loads), odd
/// output counts, with and without bias; q/k/v and gate/up as one launch (`linears`), with
/// and without a fused LoRA mixture; the lm_head. Both sides compute on the same bf16 values.
pub fn decode_matvec_cases() -> Vec<ParityCase> {
    let r = REDUCTION_TOL;
    let bf16 = |id: String, op: Op| ParityCase {
        bf16_weights: true,
        ..case(format!("bf16w {id}"), op, r)
    };
    let mut v = Vec::new();
    for (rows, k, n, bias) in [
        (1, 8, 1, false),
        (1, 576, 1001, true),
        (2, 64, 33, false),
        (3, 1536, 577, true),
        (4, 256, 9, false),
        (5, 64, 130, true),
        (8, 4096, 257, false),
    ] {
        v.push(bf16(
            matmul_id(rows, k, n, bias),
            Op::Matmul { rows, k, n, bias },
        ));
    }
    const NA: u32 = NO_ADAPTER;
    // The LoRA ranks of the mixture's slots (none: no LoRA).
    let some = &[4, 0, 8][..];
    for (rows, k, ns, bias, ranks) in [
        (1, 576, vec![576, 192, 192], false, &[][..]),
        (2, 64, vec![40, 24, 24], true, some),
        (6, 128, vec![344, 344], false, some),
        (8, 256, vec![72, 8, 8], true, &[]),
        // Inputs wider than the fused shrink's chunk (1,024): its partial sums over 5 chunks
        // (the last of 8 values), exactly 2, and 10 (past the 8 the expand loads at once, as a
        // 7B down_proj's 11).
        (1, 4104, vec![96, 32, 32], false, some),
        (3, 2048, vec![64], true, some),
        (2, 9224, vec![40, 24], false, some),
        // More expand terms (mix_k * max_rank = 48) than a warp's lanes: a lane's second term.
        (2, 1536, vec![48, 16], false, &[16, 0, 24]),
        // Features not a multiple of the block's 8 warps: idle warps in the LoRA matvec (they
        // still stage x in the bf16 compute mode); and 7 rows of 4,096, past the 48 KiB the
        // bf16 compute mode stages, so rounded per warp, with LoRA and rows < the bucket's 8.
        (1, 576, vec![60, 13], false, some),
        (7, 4096, vec![33, 8], true, some),
        // Exactly the 48 KiB the bf16 compute mode stages x in: staged by the fused-LoRA
        // matvec, rounded per warp by the inline-shrink one (its ticket takes shared memory).
        (6, 4096, vec![40, 8], false, some),
    ] {
        let lora = !ranks.is_empty();
        let mix = lora.then(|| two_segment_mix(rows, k, ranks));
        let id = format!(
            "linears(rows={rows},k={k},ns={ns:?}{})",
            linears_flags(bias, lora, &[])
        );
        let op = Op::Linears {
            rows,
            k,
            ns,
            bias,
            mix,
            bare: Vec::new(),
            silu: false,
            norm: None,
        };
        v.push(bf16(id, op));
    }
    // An adapter that targets q and v but not k: the middle job has no stack.
    v.push(bf16(
        "linears(rows=3,k=256,ns=[64, 32, 32],lora,bare=[1])".into(),
        Op::Linears {
            rows: 3,
            k: 256,
            ns: vec![64, 32, 32],
            bias: false,
            mix: Some(Mixture {
                in_dim: 256,
                out_dim: 0,
                ranks: some.to_vec(),
                segment_of_token: vec![0, 1, 1],
                k: 2,
                slots: vec![0, 2, 2, NA],
            }),
            bare: vec![1],
            silu: false,
            norm: None,
        },
    ));
    for (hidden, vocab, tokens, rows) in [(576, 1001, 3, vec![2]), (64, 300, 8, vec![7, 0, 5])] {
        let id = format!("logits(hidden={hidden},vocab={vocab},tokens={tokens},rows={rows:?})");
        let op = Op::Logits {
            hidden,
            vocab,
            tokens,
            rows,
        };
        v.push(bf16(id, op));
    }
    v
}

/// The cases for `--cuda-experimental fused-silu`: `linears_silu_mul` of a gate/up pair on
/// bf16 weights in every row bucket of the decode matvec (1 to 8 rows), widths not a multiple
/// of the block's warps, with and without bias, without LoRA and with a fused mixture (mixed
/// ranks, more expand terms than a warp's lanes, inputs over several shrink chunks), LoRA on
/// one of the pair only (`bare`), and 6 and 7 rows of 4,096 (x staged in exactly 48 KiB, and
/// rounded per warp, in the bf16 compute mode). Only silu(gate) * up is compared.
pub fn fused_silu_cases() -> Vec<ParityCase> {
    let some = &[4, 0, 8][..];
    let mut v = Vec::new();
    for (rows, k, n, bias, ranks, bare) in [
        (1, 576, 1536, false, &[][..], &[][..]),
        (1, 576, 1536, false, some, &[]),
        (2, 64, 33, true, some, &[]),
        (2, 512, 100, false, &[], &[]),
        (3, 256, 13, false, &[], &[]),
        (4, 1536, 577, true, some, &[]),
        (5, 128, 344, false, some, &[0]),
        (8, 256, 72, true, &[], &[]),
        (8, 64, 40, false, some, &[1]),
        (1, 4104, 96, false, some, &[]),
        (2, 1536, 48, false, &[16, 0, 24], &[]),
        (6, 4096, 40, false, some, &[]),
        (7, 4096, 33, true, some, &[]),
    ] {
        let lora = !ranks.is_empty();
        let mix = lora.then(|| two_segment_mix(rows, k, ranks));
        let id = format!(
            "linears_silu_mul(rows={rows},k={k},n={n}{})",
            linears_flags(bias, lora, bare)
        );
        let op = Op::Linears {
            rows,
            k,
            ns: vec![n, n],
            bias,
            mix,
            bare: bare.to_vec(),
            silu: true,
            norm: None,
        };
        v.push(ParityCase {
            bf16_weights: true,
            ..case(format!("bf16w {id}"), op, REDUCTION_TOL)
        });
    }
    v
}

/// The `linear_add_rms_norm` cases for `--cuda-experimental norm-in-matvec` (bf16 weights): the
/// folded buckets (1 and 2 rows) with and without LoRA (mixed ranks, more expand terms than a
/// warp's lanes, 5 shrink chunks), bias, widths not a multiple of 32 (a norm warp partly past
/// the row), rows of more than 8 values per thread of `add_rms_norm` at 256 threads (its loop
/// path: 4,096, a 7B's hidden size, and 2,056, just past its register path) and at 1,024
/// (12,288), both residual sites; and 3 and 8
/// rows, which the fold leaves to `add_rms_norm`. The product, the residual and the normed
/// rows are compared.
pub fn norm_in_matvec_cases() -> Vec<ParityCase> {
    use ResidualSite::{Attention, FeedForward};
    let some = &[4, 0, 8][..];
    let mut v = Vec::new();
    for (rows, k, n, bias, ranks, site) in [
        (1, 576, 576, false, &[][..], Attention),
        (1, 576, 576, false, some, FeedForward),
        (2, 64, 33, true, some, Attention),
        (2, 1536, 576, false, &[], FeedForward),
        (1, 4104, 96, true, some, FeedForward),
        (2, 1536, 48, false, &[16, 0, 24], Attention),
        (1, 1024, 4096, false, some, Attention),
        (2, 256, 12288, true, &[], FeedForward),
        (1, 256, 2056, false, &[], Attention),
        (3, 256, 40, false, some, Attention),
        (8, 128, 64, true, &[], FeedForward),
    ] {
        let lora = !ranks.is_empty();
        let mix = lora.then(|| two_segment_mix(rows, k, ranks));
        let id = format!(
            "linear_add_rms_norm(rows={rows},k={k},n={n}{},{site:?})",
            linears_flags(bias, lora, &[])
        );
        let op = Op::Linears {
            rows,
            k,
            ns: vec![n],
            bias,
            mix,
            bare: Vec::new(),
            silu: false,
            norm: Some(site),
        };
        v.push(ParityCase {
            bf16_weights: true,
            ..case(format!("bf16w {id}"), op, REDUCTION_TOL)
        });
    }
    v
}

/// The attention cases for `--cuda-experimental split-attention` (flash-decoding): every
/// attention case of the table (capacities 8 to 300: 1 to 16 splits, windows, prefill of a
/// few tokens) and long contexts (up to 4,001 positions in 16 splits, GQA, a batch at mixed
/// positions, a window inside a long cache).
pub fn split_attention_cases() -> Vec<ParityCase> {
    let mut v: Vec<ParityCase> = cases()
        .into_iter()
        .filter(|c| matches!(c.op, Op::Attention { .. }))
        .collect();
    v.push(attn(8, 2, 128, 4096, 1, &[(0, 4000)]));
    v.push(attn(4, 4, 64, 2048, 3, &[(0, 2047), (1, 5), (2, 1000)]));
    v.push(attn_window(4, 2, 64, 1024, 1, &[(0, 1000)], 300));
    v
}

/// The LoRA cases for `--cuda-lora-bf16`: every `lora_shrink`/`lora_expand` case of the table
/// and the decode-matvec `linears` cases with LoRA (for `fused-lora`), with A and B drawn as
/// bf16 values so that both sides compute on the same numbers.
pub fn bf16_lora_cases() -> Vec<ParityCase> {
    cases()
        .into_iter()
        .chain(decode_matvec_cases())
        .filter(|c| match &c.op {
            Op::Lora { .. } => true,
            Op::Linears { mix, .. } => mix.is_some(),
            _ => false,
        })
        .map(|c| ParityCase {
            id: format!("bf16 LoRA {}", c.id),
            bf16_lora: true,
            ..c
        })
        .collect()
}

/// A pseudo-random mixture for segment `s`: `k` distinct slots out of `n`, some entries unused.
fn mixture(s: u32, k: usize, n: u32) -> Vec<u32> {
    let mut m: Vec<u32> = Vec::new();
    for i in 0..k as u32 {
        let slot = (s * 7 + i * 3 + s * s) % n;
        m.push(if (s + i) % 5 == 4 || m.contains(&slot) {
            NO_ADAPTER
        } else {
            slot
        });
    }
    m
}

/// The `linears` cases for `--cuda-experimental batch-lora`: decode batches that the decode
/// matvec does not take (every token its own sequence and mixture, out of 8 adapters with
/// ranks 0 to 24), from 9 to 64 tokens, one past that (65: the per-module kernels again) and a
/// single token (with the switch alone, every decode step takes it); q/k/v- and gate/up-shaped
/// groups and one module alone; inputs of one in_dim chunk of the shrink, 3 (the last partial)
/// and 11 (a 7B down_proj's); outputs wider than the expand's block; a group whose middle
/// module has no LoRA stack; with and without bias.
pub fn batch_lora_cases() -> Vec<ParityCase> {
    let ranks = vec![8, 0, 16, 4, 8, 1, 24, 8];
    let mut v = Vec::new();
    for (rows, k, ns, bias, kk, bare) in [
        (9, 64, vec![40, 24, 24], true, 3, vec![]),
        (32, 4096, vec![64, 64, 32], false, 3, vec![]),
        (17, 2056, vec![33], true, 2, vec![]),
        (64, 11008, vec![24], false, 3, vec![]),
        (65, 128, vec![48, 16], false, 3, vec![]),
        (1, 576, vec![60, 13], false, 3, vec![]),
        // Outputs over several of the expand's 256-wide blocks, k/v narrower than q (the
        // blocks past a job's width); then k without a LoRA stack (q and v targeted).
        (12, 256, vec![600, 136, 136], true, 3, vec![]),
        (10, 256, vec![600, 136, 136], false, 3, vec![1]),
    ] {
        let mix = Mixture {
            in_dim: k,
            out_dim: 0,
            ranks: ranks.clone(),
            segment_of_token: (0..rows as u32).collect(),
            k: kk,
            slots: (0..rows as u32).flat_map(|t| mixture(t, kk, 8)).collect(),
        };
        let id = format!(
            "batch linears(rows={rows},k={k},ns={ns:?}{})",
            linears_flags(bias, true, &bare)
        );
        let op = Op::Linears {
            rows,
            k,
            ns,
            bias,
            mix: Some(mix),
            bare,
            silu: false,
            norm: None,
        };
        v.push(case(id, op, REDUCTION_TOL));
    }
    v
}

/// The LoRA cases for `--cuda-experimental sgmv` (tiles of 16 tokens, each adapter a tile uses
/// one TF32 GEMM): every `lora_shrink`/`lora_expand` case of the table, and steps shaped for
/// the tiles: a batch of 37 tokens with a mixture each (three tiles, the last partial) over
/// mixed ranks, a prefill of two sentences, a tile with no adapter at all, the largest `K` the
/// kernels take (16) and one past it, a mixture naming one adapter twice, a single decode
/// token, and a stack too wide for the expand's shared memory (the segment kernels then run).
/// Widths are off the mma's multiples of 8 and the expand's 64 columns; input widths take
/// the shrink's 16-byte path whole (4096), with a tail (100 in f32, 136), or not at all.
pub fn sgmv_cases() -> Vec<ParityCase> {
    const NA: u32 = NO_ADAPTER;
    let mut v: Vec<ParityCase> = cases()
        .into_iter()
        .filter(|c| matches!(c.op, Op::Lora { .. }))
        .collect();
    let ranks = [8, 0, 16, 4, 8, 1, 3, 8, 2, 5];
    let batch: Vec<u32> = (0..37).flat_map(|s| mixture(s, 3, 10)).collect();
    v.extend(lora(
        70,
        100,
        &ranks,
        &(0..37).collect::<Vec<_>>(),
        3,
        &batch,
    ));
    // Two sentences of a prefill: 30 and 20 tokens, each one mixture.
    let seg: Vec<u32> = (0..50).map(|t| u32::from(t >= 30)).collect();
    v.extend(lora(136, 130, &[8, 8, 4], &seg, 2, &[0, 2, 1, NA]));
    // Tokens 16..32 use no adapter (their tile's union is empty); the rest use slot 1.
    let seg: Vec<u32> = (0..40).map(|t| u32::from((16..32).contains(&t))).collect();
    v.extend(lora(100, 17, &[0, 6], &seg, 1, &[1, NA]));
    // K = 16, the most the kernels take, over 20 adapters; and K = 17 (segment kernels).
    for k in [16, 17] {
        let mix: Vec<u32> = (0..5).flat_map(|s| mixture(s, k, 20)).collect();
        let seg: Vec<u32> = (0..19).map(|t| t % 5).collect();
        v.extend(lora(33, 65, &[2; 20], &seg, k, &mix));
    }
    // One adapter named twice in a mixture (each entry applies, as on the CPU).
    v.extend(lora(16, 16, &[4, 4], &[0, 0, 1], 3, &[1, 1, 0, 0, NA, 1]));
    // One decode token.
    v.extend(lora(4096, 64, &[8, 8, 8], &[0], 3, &[2, 0, 1]));
    // 40 adapters of rank 64, two per token: a union bound of 2,048 columns, too wide for the
    // expand's shared memory.
    let mix: Vec<u32> = (0..20).flat_map(|s| [s, s + 20]).collect();
    v.extend(lora(
        16,
        24,
        &[64; 40],
        &(0..20).collect::<Vec<_>>(),
        2,
        &mix,
    ));
    v
}

/// The LoRA cases for `--cuda-experimental tiled-lora` (tiles of 8 consecutive tokens, the
/// tokens of a tile that name one adapter sharing one read of its rows): every SGMV case (the
/// table's, a prefill whose sentences meet inside a tile, a tile with no adapter, an adapter
/// named twice, a decode token, ...; several of them at widths the tiled shrink does not take,
/// where the segment kernels run) and steps shaped for the tiles: lora_bench's layout (64
/// tokens in 8 segments of 3 adapters) with segments that straddle tiles, an input of several
/// shrink rounds with a partial last one (8,200: 4,096 values per round),
/// used ranks past one row pair and past the expand's rounds of 16 (17, 24, 33); batches with
/// a mixture per token (8 adapter groups in a tile) at K 16 and 17 on a width the 16-byte
/// loads take; two sentences in one tile naming the same adapters with different weights; and
/// input widths the 16-byte loads do not take in bf16 (100) or at all (33).
pub fn tiled_lora_cases() -> Vec<ParityCase> {
    const NA: u32 = NO_ADAPTER;
    let mut v = sgmv_cases();
    // Segments of 5, 11, 8, ... tokens: boundaries at 5, 16, 24, 29, 40, 51, 59 (inside tiles).
    let lens = [5u32, 11, 8, 5, 11, 11, 8, 5];
    let seg: Vec<u32> = (0..8u32)
        .flat_map(|s| vec![s; lens[s as usize] as usize])
        .collect();
    let mix: Vec<u32> = (0..8).flat_map(|s| mixture(s, 3, 12)).collect();
    // The mixtures name slots 0, 2, 3, 5, 6, 8, 9 and 11.
    let ranks = [17, 4, 24, 3, 16, 1, 0, 5, 16, 9, 2, 33];
    v.extend(lora(8200, 300, &ranks, &seg, 3, &mix));
    v.extend(lora(100, 70, &ranks, &seg, 3, &mix));
    // A mixture per token, K 16 (and 17) out of 20 adapters of mixed ranks.
    let ranks20: Vec<u32> = (0..20).map(|i| [2, 5, 8, 0, 17][i % 5]).collect();
    for k in [16, 17] {
        let mix: Vec<u32> = (0..19).flat_map(|s| mixture(s, k, 20)).collect();
        v.extend(lora(
            136,
            65,
            &ranks20,
            &(0..19).collect::<Vec<_>>(),
            k,
            &mix,
        ));
    }
    // Two sentences in one tile with the same two adapters (each entry its own weight).
    let seg = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2];
    v.extend(lora(136, 40, &[3, 6, 8], &seg, 2, &[1, 2, 1, 2, 0, NA]));
    // A 13-token prefill of one sentence, one adapter of odd rank, and a padded second entry.
    v.extend(lora(33, 29, &[7, 0], &[0; 13], 2, &[0, NA]));
    v
}

/// The attention cases for `--cuda-experimental fused-kv-store`, held to bound 0 against the
/// unfused backend: every case of [`split_attention_cases`], decode steps (each token alone in
/// its slot: the fused kernels) and prefills (several tokens in one slot: `kv_store` as before).
pub fn fused_kv_store_cases() -> Vec<ParityCase> {
    let mut v = split_attention_cases();
    // A batch of slots out of order, one at position 0 (only its own key), GQA; and a window
    // of 1 (each token attends to its own key alone, the one the fused kernel reads fresh).
    v.push(attn(
        8,
        2,
        64,
        512,
        4,
        &[(3, 0), (0, 511), (2, 100), (1, 7)],
    ));
    v.push(attn_window(4, 4, 32, 64, 2, &[(1, 40), (0, 3)], 1));
    // Wide heads (every lane's 8 elements in use; head_dim 200 leaves some idle), odd heads
    // (a bf16 cache's words then hold halves of two writers' rows).
    v.push(attn(4, 2, 256, 80, 2, &[(0, 5), (1, 79)]));
    v.push(attn(2, 2, 200, 40, 1, &[(0, 39)]));
    v.push(attn(2, 1, 7, 9, 1, &[(0, 8)]));
    v.push(attn(4, 2, 7, 9, 2, &[(0, 8), (1, 0)]));
    // More tokens than split attention takes (64): one per slot, unsplit.
    let many: Vec<(u32, u32)> = (0..65).map(|i| (i, i % 8)).collect();
    v.push(attn(2, 1, 16, 8, 65, &many));
    v.into_iter()
        .map(|c| ParityCase { tol: 0.0, ..c })
        .collect()
}

/// The cases for `--cuda-experimental rope-in-attention`: every case of
/// [`fused_kv_store_cases`] through `rope_attention` on a random rope table, held to bound 0
/// against a backend that runs `rope` then `attention` (the decode steps, the 65-token one
/// included, take the rotating kernels; the prefills keep the rope launch). Head widths 7 and
/// 200 leave an unrotated last element and lanes whose pair lies in another lane.
pub fn rope_in_attention_cases() -> Vec<ParityCase> {
    fused_kv_store_cases()
        .into_iter()
        .map(|c| match c.op {
            Op::Attention {
                shape,
                slots,
                kv_slots,
                positions,
                ..
            } => ParityCase {
                id: format!("{},rope", c.id),
                op: Op::Attention {
                    shape,
                    slots,
                    kv_slots,
                    positions,
                    rope: true,
                },
                ..c
            },
            op => unreachable!("fused_kv_store_cases holds attention cases only: {op:?}"),
        })
        .collect()
}

/// The attention cases for `--cuda-kv-bf16`: every attention case of the table, the long
/// contexts of [`split_attention_cases`] and a cache of an odd number of values, with the caches' earlier positions drawn as bf16
/// values; run against the CPU with keys and values rounded as they are stored
/// (`CpuProbe::bf16_kv`), so the caches must match exactly where written.
pub fn bf16_kv_cases() -> Vec<ParityCase> {
    let mut v = split_attention_cases();
    // An odd number of cache values (1 x 9 x 7): the last packed word holds one.
    v.push(attn(2, 1, 7, 9, 1, &[(0, 8), (0, 3)]));
    v.into_iter()
        .map(|c| ParityCase {
            id: format!("bf16 KV {}", c.id),
            bf16_kv: true,
            ..c
        })
        .collect()
}
