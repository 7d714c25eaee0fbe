//! `impl Backend for WgpuBackend`: host-side checks (the CPU reference's, so both backends
//! refuse the same inputs) and one or two dispatches per op.

use dlp_engine::{AttnShape, Backend, Error, HostTensor, LoraStackHost, Result, StepPlan, Xielu};

use crate::backend::{check_len, err, WgpuBackend, WgpuBuf, WgpuLora, WgpuStep, WgpuWeight};
use crate::device::{groups_1d, Variant};
use crate::params::*;

/// Largest head_dim of the attention shader (its per-thread accumulators cover 4 x 64).
const MAX_HEAD_DIM: usize = 256;

impl WgpuBackend {
    /// `out[:, n_off..] = x @ W_block^T (+ bias)` for every row block of `w`: the gemv kernel
    /// for up to 4 rows (decode), else the tiled one (16 or 64 rows per workgroup).
    #[allow(clippy::too_many_arguments)]
    fn matmul_raw(
        &self,
        x: &wgpu::Buffer,
        w: &WgpuWeight,
        bias: Option<&wgpu::Buffer>,
        rows: usize,
        k: usize,
        n: usize,
        out: &wgpu::Buffer,
    ) -> Result<()> {
        for b in &w.blocks {
            let p = MatmulP {
                rows: rows as u32,
                k: k as u32,
                n: n as u32,
                n_off: b.start as u32,
                n_blk: b.rows as u32,
                has_bias: bias.is_some() as u32,
                _p: [0; 2],
            };
            let bufs = [
                (1, x),
                (2, &b.buf),
                (3, bias.unwrap_or(&self.dummy)),
                (4, out),
            ];
            let weights = w.store;
            if rows <= 4 {
                let v = Variant { tm: 0, weights };
                self.gpu
                    .dispatch("matmul", "gemv", v, &p, &bufs, groups_1d(b.rows, 8))?;
            } else {
                // Rows per invocation: 16 rows per workgroup for small batches, else 64.
                let tm = if rows <= 16 { 2 } else { 8 };
                let g = [b.rows.div_ceil(64) as u32, rows.div_ceil(8 * tm) as u32, 1];
                let v = Variant {
                    tm: tm as u32,
                    weights,
                };
                self.gpu.dispatch("matmul", "tiled", v, &p, &bufs, g)?;
            }
        }
        Ok(())
    }

    /// `silu_mul` or `gelu_mul` (shader `op`): `out[i] = act(gate[i]) * up[i]`.
    fn gated(
        &self,
        op: &'static str,
        gate: &WgpuBuf,
        up: &WgpuBuf,
        n: usize,
        out: &WgpuBuf,
    ) -> Result<()> {
        check_len(op, "gate", gate.len, n)?;
        check_len(op, "up", up.len, n)?;
        check_len(op, "out", out.len, n)?;
        let p = CountP {
            n: n as u32,
            _p: [0; 3],
        };
        let bufs = [(1, &gate.buf), (2, &up.buf), (3, &out.buf)];
        let g = groups_1d(n, 256);
        self.gpu.dispatch(op, "main", Variant::PLAIN, &p, &bufs, g)
    }

    /// `out[i] = f(x[i])` for `n` values by shader `op` (`gelu`, `gelu_erf`, `relu_sq`, `xielu`)
    /// with its constants `c` (xielu's; zero for the others).
    fn unary(
        &self,
        op: &'static str,
        x: &WgpuBuf,
        n: usize,
        c: [f32; 4],
        out: &WgpuBuf,
    ) -> Result<()> {
        check_len(op, "x", x.len, n)?;
        check_len(op, "out", out.len, n)?;
        let p = UnaryP {
            n: n as u32,
            _p: [0; 3],
            c,
        };
        let bufs = [(1, &x.buf), (2, &out.buf)];
        self.gpu
            .dispatch(op, "main", Variant::PLAIN, &p, &bufs, groups_1d(n, 256))
    }

    /// `scale` or `softcap` (shader `op`): `x[i] = f(x[i], s)` for `n` values.
    fn in_place(&self, op: &'static str, x: &mut WgpuBuf, s: f32, n: usize) -> Result<()> {
        check_len(op, "x", x.len, n)?;
        let p = ScaleP {
            n: n as u32,
            s,
            _p: [0; 2],
        };
        let g = groups_1d(n, 256);
        (self.gpu).dispatch(op, "main", Variant::PLAIN, &p, &[(1, &x.buf)], g)
    }
}

fn too_many(op: &str, what: &str, n: usize) -> Result<()> {
    if n > 65535 {
        return Err(Error::unsupported(format!(
            "wgpu {op}: {n} {what} in one call (at most 65535 per dispatch dimension)"
        )));
    }
    Ok(())
}

impl Backend for WgpuBackend {
    type Buf = WgpuBuf;
    type Weight = WgpuWeight;
    type Step = WgpuStep;
    type Lora = WgpuLora;

    fn name(&self) -> String {
        let f16 = if self.gpu.f16 { " (f16 weights)" } else { "" };
        format!("wgpu:{}{f16}", self.gpu.info.name)
    }

    fn alloc(&self, len: usize) -> Result<WgpuBuf> {
        let what = format!("buffer of {len} f32");
        Ok(WgpuBuf {
            buf: self.gpu.storage(&what, (len * 4) as u64, None)?,
            len,
        })
    }

    fn upload(&self, data: &[f32]) -> Result<WgpuBuf> {
        self.buffer(&format!("buffer of {} f32", data.len()), data)
    }

    fn copies_kv(&self) -> bool {
        true
    }

    fn copy_kv(&self, buf: &mut WgpuBuf, from: usize, to: usize, len: usize) -> Result<()> {
        dlp_engine::backend::check_kv_copy(buf.len, from, to, len)?;
        let b = |n: usize| (n * 4) as u64;
        self.gpu.copy_within(&buf.buf, b(from), b(to), b(len))
    }

    fn download(&self, buf: &WgpuBuf, len: usize) -> Result<Vec<f32>> {
        check_len("download", "buf", buf.len, len)?;
        self.gpu.read(&buf.buf, len)
    }

    fn upload_weight(&self, w: &HostTensor) -> Result<WgpuWeight> {
        self.upload_weight_impl(w)
    }

    fn weight_bytes(&self, w: &WgpuWeight) -> Option<usize> {
        Some(w.blocks.iter().map(|b| b.buf.size() as usize).sum())
    }

    /// A GGUF's quantised blocks reach [`Backend::upload_weight`] as they are and stay compact
    /// on the device (as scale-offset groups, [`crate::WeightStore::Groups`]); f16 and bf16
    /// tensors become f32 or f16 there, as before.
    fn packed_weights(&self) -> bool {
        true
    }

    fn packed_description(&self) -> &'static str {
        "the GGUF's quantised matrices as groups of their values, the rest f32"
    }

    fn upload_lora(&self, s: &LoraStackHost) -> Result<WgpuLora> {
        self.upload_lora_impl(s)
    }

    fn upload_step(&self, plan: &StepPlan, reuse: Option<WgpuStep>) -> Result<WgpuStep> {
        self.upload_step_impl(plan, reuse)
    }

    fn embedding(
        &self,
        table: &WgpuWeight,
        step: &WgpuStep,
        n_tokens: usize,
        dim: usize,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        check_len("embedding", "out", out.len, n_tokens * dim)?;
        if table.cols != dim {
            return Err(Error::invalid(format!(
                "embedding: table has {} columns, expected {dim}",
                table.cols
            )));
        }
        for &id in &step.plan.token_ids[..n_tokens] {
            if id as usize >= table.rows {
                return Err(Error::invalid(format!(
                    "token id {id} is outside the vocabulary (size {})",
                    table.rows
                )));
            }
        }
        for b in &table.blocks {
            let p = EmbeddingP {
                n_tokens: n_tokens as u32,
                dim: dim as u32,
                row_start: b.start as u32,
                block_rows: b.rows as u32,
                ids_off: step.off.ids,
                _p: [0; 3],
            };
            let bufs = [(1, &b.buf), (2, &step.buf), (3, &out.buf)];
            let g = groups_1d(n_tokens * dim, 256);
            let v = Variant {
                tm: 0,
                weights: table.store,
            };
            self.gpu.dispatch("embedding", "main", v, &p, &bufs, g)?;
        }
        Ok(())
    }

    fn rms_norm(
        &self,
        x: &WgpuBuf,
        w: &WgpuBuf,
        rows: usize,
        dim: usize,
        w_rows: usize,
        eps: f32,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        dlp_engine::backend::check_norm_weight_rows(rows, w_rows)?;
        check_len("rms_norm", "x", x.len, rows * dim)?;
        check_len("rms_norm", "out", out.len, rows * dim)?;
        check_len("rms_norm", "w", w.len, w_rows * dim)?;
        let p = RmsNormP {
            rows: rows as u32,
            dim: dim as u32,
            eps,
            w_rows: w_rows as u32,
        };
        let bufs = [(1, &x.buf), (2, &w.buf), (3, &out.buf)];
        self.gpu.dispatch(
            "rms_norm",
            "main",
            Variant::PLAIN,
            &p,
            &bufs,
            groups_1d(rows, 1),
        )
    }

    fn center(&self, x: &mut WgpuBuf, rows: usize, dim: usize) -> Result<()> {
        check_len("center", "x", x.len, rows * dim)?;
        let p = CenterP {
            rows: rows as u32,
            dim: dim as u32,
            _p: [0; 2],
        };
        let bufs = [(1, &x.buf)];
        self.gpu.dispatch(
            "center",
            "main",
            Variant::PLAIN,
            &p,
            &bufs,
            groups_1d(rows, 1),
        )
    }

    fn matmul(
        &self,
        x: &WgpuBuf,
        w: &WgpuWeight,
        bias: Option<&WgpuBuf>,
        rows: usize,
        k: usize,
        n: usize,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        if w.cols != k || w.rows != n {
            return Err(err(format!(
                "matmul: weight is [{}, {}], call expects [{n}, {k}]",
                w.rows, w.cols
            )));
        }
        check_len("matmul", "x", x.len, rows * k)?;
        check_len("matmul", "out", out.len, rows * n)?;
        if let Some(b) = bias {
            check_len("matmul", "bias", b.len, n)?;
        }
        too_many("matmul", "rows / 16", rows.div_ceil(16))?;
        self.matmul_raw(&x.buf, w, bias.map(|b| &b.buf), rows, k, n, &out.buf)
    }

    fn rope(
        &self,
        x: &mut WgpuBuf,
        cos_sin: &WgpuBuf,
        step: &WgpuStep,
        n_tokens: usize,
        n_heads: usize,
        head_dim: usize,
    ) -> Result<()> {
        check_len("rope", "x", x.len, n_tokens * n_heads * head_dim)?;
        let table = dlp_engine::backend::rope_table_len(&step.plan.positions, n_tokens, head_dim);
        check_len("rope", "cos_sin", cos_sin.len, table)?;
        let p = RopeP {
            n_tokens: n_tokens as u32,
            n_heads: n_heads as u32,
            head_dim: head_dim as u32,
            pos_off: step.off.pos,
        };
        let bufs = [(1, &x.buf), (2, &cos_sin.buf), (3, &step.buf)];
        let g = groups_1d(n_tokens * n_heads * (head_dim / 2), 256);
        self.gpu
            .dispatch("rope", "main", Variant::PLAIN, &p, &bufs, g)
    }

    fn attention(
        &self,
        q: &WgpuBuf,
        k: &WgpuBuf,
        v: &WgpuBuf,
        k_cache: &mut WgpuBuf,
        v_cache: &mut WgpuBuf,
        step: &WgpuStep,
        s: AttnShape,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        let (t_n, hd) = (s.n_tokens, s.head_dim);
        let kv_dim = s.n_kv_heads * hd;
        let q_dim = s.n_heads * hd;
        check_len("attention", "q", q.len, t_n * q_dim)?;
        check_len("attention", "k", k.len, t_n * kv_dim)?;
        check_len("attention", "v", v.len, t_n * kv_dim)?;
        check_len("attention", "out", out.len, t_n * q_dim)?;
        s.check_scores()?;
        if hd > MAX_HEAD_DIM || s.n_kv_heads == 0 || !s.n_heads.is_multiple_of(s.n_kv_heads) {
            return Err(Error::unsupported(format!(
                "wgpu attention: head_dim {hd} (at most {MAX_HEAD_DIM}), {} heads over {} kv heads",
                s.n_heads, s.n_kv_heads
            )));
        }
        too_many("attention", "tokens", t_n)?;
        let slots = k_cache.len.min(v_cache.len) / (s.capacity * kv_dim).max(1);
        step.plan.check_kv_positions(t_n, slots, s.capacity)?;
        let p = AttentionP {
            n_tokens: t_n as u32,
            n_heads: s.n_heads as u32,
            n_kv_heads: s.n_kv_heads as u32,
            head_dim: hd as u32,
            capacity: s.capacity as u32,
            pos_off: step.off.pos,
            slot_off: step.off.slots,
            scale: s.scale,
            window: u32::try_from(s.window).unwrap_or(u32::MAX),
            softcap: s.softcap,
            _p: [0; 2],
        };
        let (kc, vc, sb) = (&k_cache.buf, &v_cache.buf, &step.buf);
        let store = [(2, &k.buf), (3, &v.buf), (4, kc), (5, vc), (6, sb)];
        let g = groups_1d(t_n * kv_dim, 256);
        self.gpu
            .dispatch("attention", "store_kv", Variant::PLAIN, &p, &store, g)?;
        let attend = [(1, &q.buf), (4, kc), (5, vc), (6, sb), (7, &out.buf)];
        let g = [s.n_heads as u32, t_n as u32, 1];
        self.gpu
            .dispatch("attention", "attend", Variant::PLAIN, &p, &attend, g)
    }

    fn silu_mul(&self, gate: &WgpuBuf, up: &WgpuBuf, n: usize, out: &mut WgpuBuf) -> Result<()> {
        self.gated("silu_mul", gate, up, n, out)
    }

    fn gelu_mul(&self, gate: &WgpuBuf, up: &WgpuBuf, n: usize, out: &mut WgpuBuf) -> Result<()> {
        self.gated("gelu_mul", gate, up, n, out)
    }

    fn gelu(&self, x: &WgpuBuf, n: usize, out: &mut WgpuBuf) -> Result<()> {
        self.unary("gelu", x, n, [0.0; 4], out)
    }

    fn gelu_erf(&self, x: &WgpuBuf, n: usize, out: &mut WgpuBuf) -> Result<()> {
        self.unary("gelu_erf", x, n, [0.0; 4], out)
    }

    fn relu_sq(&self, x: &WgpuBuf, n: usize, out: &mut WgpuBuf) -> Result<()> {
        self.unary("relu_sq", x, n, [0.0; 4], out)
    }

    fn xielu(&self, x: &WgpuBuf, n: usize, p: Xielu, out: &mut WgpuBuf) -> Result<()> {
        let c = [p.alpha_p, p.alpha_n, p.beta, p.eps];
        self.unary("xielu", x, n, c, out)
    }

    fn add_bias(&self, x: &mut WgpuBuf, bias: &WgpuBuf, rows: usize, dim: usize) -> Result<()> {
        check_len("add_bias", "x", x.len, rows * dim)?;
        check_len("add_bias", "bias", bias.len, dim)?;
        let n = rows * dim;
        if n == 0 {
            return Ok(());
        }
        let p = AddBiasP {
            n: n as u32,
            dim: dim as u32,
            _p: [0; 2],
        };
        let bufs = [(1, &x.buf), (2, &bias.buf)];
        let g = groups_1d(n, 256);
        self.gpu
            .dispatch("add_bias", "main", Variant::PLAIN, &p, &bufs, g)
    }

    fn scale(&self, x: &mut WgpuBuf, s: f32, n: usize) -> Result<()> {
        self.in_place("scale", x, s, n)
    }

    fn softcap(&self, x: &mut WgpuBuf, cap: f32, n: usize) -> Result<()> {
        dlp_engine::backend::check_softcap(cap)?;
        self.in_place("softcap", x, cap, n)
    }

    fn clamp(&self, x: &mut WgpuBuf, limit: f32, n: usize) -> Result<()> {
        dlp_engine::backend::check_clamp(limit)?;
        self.in_place("clamp", x, limit, n)
    }

    fn add(&self, dst: &mut WgpuBuf, src: &WgpuBuf, n: usize) -> Result<()> {
        check_len("add", "dst", dst.len, n)?;
        check_len("add", "src", src.len, n)?;
        let p = CountP {
            n: n as u32,
            _p: [0; 3],
        };
        let bufs = [(1, &dst.buf), (2, &src.buf)];
        self.gpu
            .dispatch("add", "main", Variant::PLAIN, &p, &bufs, groups_1d(n, 256))
    }

    fn lora_shrink(
        &self,
        x: &WgpuBuf,
        lora: &WgpuLora,
        step: &WgpuStep,
        n_tokens: usize,
        u: &mut WgpuBuf,
    ) -> Result<()> {
        let (l, plan) = (&lora.host, &step.plan);
        plan.check_lora(n_tokens, l.slot_rank.len())?;
        check_len("lora_shrink", "x", x.len, n_tokens * l.in_dim)?;
        check_len(
            "lora_shrink",
            "u",
            u.len,
            n_tokens * plan.mix_k * l.max_rank,
        )?;
        too_many("lora_shrink", "tokens", n_tokens)?;
        let p = lora_params(l, step, n_tokens);
        let bufs = [
            (1, &x.buf),
            (2, &lora.a),
            (4, &lora.slots),
            (5, &step.buf),
            (6, &u.buf),
        ];
        let g = [plan.mix_k as u32, n_tokens as u32, 1];
        self.gpu
            .dispatch("lora", "shrink", Variant::PLAIN, &p, &bufs, g)
    }

    fn lora_expand(
        &self,
        u: &WgpuBuf,
        lora: &WgpuLora,
        step: &WgpuStep,
        n_tokens: usize,
        y: &mut WgpuBuf,
    ) -> Result<()> {
        let (l, plan) = (&lora.host, &step.plan);
        plan.check_lora(n_tokens, l.slot_rank.len())?;
        check_len(
            "lora_expand",
            "u",
            u.len,
            n_tokens * plan.mix_k * l.max_rank,
        )?;
        check_len("lora_expand", "y", y.len, n_tokens * l.out_dim)?;
        too_many("lora_expand", "tokens", n_tokens)?;
        let p = lora_params(l, step, n_tokens);
        let bufs = [
            (3, &lora.bt),
            (4, &lora.slots),
            (5, &step.buf),
            (7, &u.buf),
            (8, &y.buf),
        ];
        let g = [l.out_dim.div_ceil(64) as u32, n_tokens as u32, 1];
        self.gpu
            .dispatch("lora", "expand", Variant::PLAIN, &p, &bufs, g)
    }

    fn logits(
        &self,
        x: &WgpuBuf,
        norm: &WgpuBuf,
        eps: f32,
        lm_head: &WgpuWeight,
        step: &WgpuStep,
        hidden: usize,
        vocab: usize,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        let rows = &step.plan.logit_rows;
        let n = rows.len();
        check_len("logits", "out", out.len, n * vocab)?;
        if lm_head.rows != vocab || lm_head.cols != hidden {
            return Err(err(format!(
                "logits: lm_head is [{}, {}], call expects [{vocab}, {hidden}]",
                lm_head.rows, lm_head.cols
            )));
        }
        check_len("logits", "norm", norm.len, hidden)?;
        for &r in rows {
            check_len("logits", "x", x.len, (r as usize + 1) * hidden)?;
        }
        if n == 0 {
            return Ok(());
        }
        let scratch = self.scratch(n * hidden)?;
        let p = LogitsP {
            n_rows: n as u32,
            hidden: hidden as u32,
            eps,
            rows_off: step.off.logit_rows,
        };
        let bufs = [(1, &x.buf), (2, &norm.buf), (3, &step.buf), (4, &scratch)];
        self.gpu.dispatch(
            "logits",
            "gather_norm",
            Variant::PLAIN,
            &p,
            &bufs,
            groups_1d(n, 1),
        )?;
        self.matmul_raw(&scratch, lm_head, None, n, hidden, vocab, &out.buf)
    }

    fn argmax(&self, logits: &WgpuBuf, rows: usize, vocab: usize, out: &mut WgpuBuf) -> Result<()> {
        dlp_engine::cpu::argmax::check_vocab(vocab)?;
        check_len("argmax", "logits", logits.len, rows * vocab)?;
        check_len("argmax", "out", out.len, rows)?;
        let p = ArgmaxP {
            rows: rows as u32,
            vocab: vocab as u32,
            _p: [0; 2],
        };
        let bufs = [(1, &logits.buf), (2, &out.buf)];
        let g = groups_1d(rows, 1);
        self.gpu
            .dispatch("argmax", "main", Variant::PLAIN, &p, &bufs, g)
    }
}

fn lora_params(l: &LoraStackHost, step: &WgpuStep, n_tokens: usize) -> LoraP {
    LoraP {
        n_tokens: n_tokens as u32,
        mix_k: step.plan.mix_k as u32,
        max_rank: l.max_rank as u32,
        in_dim: l.in_dim as u32,
        out_dim: l.out_dim as u32,
        n_slots: l.slot_rank.len() as u32,
        n_segments: step.plan.n_segments() as u32,
        seg_off: step.off.seg,
        mslot_off: step.off.mix_slots,
        mw_off: step.off.mix_weights,
        _p: [0; 2],
    }
}
