//! The `#[test]` lists of the golden suites: one macro per family of fixtures, each test
//! calling `$run("<fixture folder>")`, so that every backend's suite runs the same cases.

/// One `#[test]` per fixture model (`tiny_llama`, `tiny_qwen2`, `tiny_llama3`, `smollm2`, and
/// this repository's `tiny_qwen3`), each calling `$run("<fixture folder>")`.
#[macro_export]
macro_rules! fixture_tests {
    ($run:path) => {
        #[test]
        fn tiny_llama() {
            $run("tiny-llama");
        }
        #[test]
        fn tiny_qwen2() {
            $run("tiny-qwen2");
        }
        #[test]
        fn tiny_llama3() {
            $run("tiny-llama3");
        }
        #[test]
        fn tiny_qwen3() {
            $run("tiny-qwen3");
        }
        #[test]
        fn smollm2() {
            $run("smollm2");
        }
    };
}

/// One `#[test]` per GGUF fixture of this repository (`tiny_qwen3_gguf`, `tiny_qwen2_gguf`,
/// `tiny_llama_gguf`: llama.cpp's architectures, every quantisation type the engine reads,
/// Llama 3.1's `rope_freqs`), each calling `$run("<fixture folder>")`. For the backends' own
/// paths (f32, the CPU's packed blocks, wgpu's f16 weights): their random quantised weights
/// are harsher than a trained model's, so the precision emulations, whose bounds were measured
/// on the other fixtures, do not run them.
#[macro_export]
macro_rules! gguf_fixture_tests {
    ($run:path) => {
        #[test]
        fn tiny_qwen3_gguf() {
            $run("tiny-qwen3-gguf");
        }
        #[test]
        fn tiny_qwen2_gguf() {
            $run("tiny-qwen2-gguf");
        }
        #[test]
        fn tiny_llama_gguf() {
            $run("tiny-llama-gguf");
        }
    };
}

/// One `#[test]` per RoPE-scaling fixture of this repository (`tiny_qwen2_yarn`, its GGUF
/// form `tiny_qwen2_yarn_gguf`, `tiny_llama_linear`: made by
/// `tests/fixtures/make_rope_scaling.py`; `tiny_ministral3`: YaRN with Ministral 3's cos/sin
/// factor, `tests/fixtures/make_ministral3.py`), each calling `$run("<fixture folder>")`. The
/// scaling is in the host's RoPE table, the same for every backend: run where the plain
/// fixtures run.
#[macro_export]
macro_rules! rope_fixture_tests {
    ($run:path) => {
        #[test]
        fn tiny_qwen2_yarn() {
            $run("tiny-qwen2-yarn");
        }
        #[test]
        fn tiny_qwen2_yarn_gguf() {
            $run("tiny-qwen2-yarn-gguf");
        }
        #[test]
        fn tiny_llama_linear() {
            $run("tiny-llama-linear");
        }
        #[test]
        fn tiny_ministral3() {
            $run("tiny-ministral3");
        }
    };
}

/// One `#[test]` per Phi-3 fixture of this repository (`tiny_phi3`: stacked `qkv_proj` and
/// `gate_up_proj`, adapters on them, a sliding window; `tiny_phi3_gguf`: llama.cpp's `phi3`
/// file with quantised stacked matrices; `tiny_phi3_longrope` and its GGUF form: LongRoPE's
/// long factors; `tiny_phi3_partial_rotary` and its GGUF form: the same with RoPE on 3/4 of
/// each head; made by `tests/fixtures/make_phi3.py`), each calling
/// `$run("<fixture folder>")`. The stacked matrices are split at load, so every backend runs
/// them as the other models: run where the plain fixtures run.
#[macro_export]
macro_rules! phi3_fixture_tests {
    ($run:path) => {
        #[test]
        fn tiny_phi3() {
            $run("tiny-phi3");
        }
        #[test]
        fn tiny_phi3_gguf() {
            $run("tiny-phi3-gguf");
        }
        #[test]
        fn tiny_phi3_longrope() {
            $run("tiny-phi3-longrope");
        }
        #[test]
        fn tiny_phi3_longrope_gguf() {
            $run("tiny-phi3-longrope-gguf");
        }
        #[test]
        fn tiny_phi3_partial_rotary() {
            $run("tiny-phi3-partial");
        }
        #[test]
        fn tiny_phi3_partial_rotary_gguf() {
            $run("tiny-phi3-partial-gguf");
        }
    };
}

/// One `#[test]` per Gemma fixture of this repository (`tiny_gemma3`: Gemma 3's sliding and
/// full-attention layers with their two RoPE tables, norms around both sub-blocks, a query
/// scale other than head_dim's, two adapters; `tiny_gemma3_gguf`: llama.cpp's `gemma3` file;
/// `tiny_gemma3_multimodal_text`: the text model of a text-and-image checkpoint, its adapter's
/// vision-tower LoRAs left out;
/// `tiny_gemma` and its GGUF form: Gemma (1); `tiny_gemma2`: Gemma 2's soft-capped attention
/// scores and logits, a window in every other layer, a query scale other than head_dim's, two
/// adapters; `tiny_gemma2_gguf`: llama.cpp's `gemma2` file; made by
/// `tests/fixtures/make_gemma.py`; `tiny_vaultgemma`: Gemma 2 without the norms after each
/// sub-block; made by `make_vaultgemma.py`), each calling `$run("<fixture folder>")`. GELU, the embedding
/// scale and the soft caps are ops of every backend: run where the plain fixtures run.
#[macro_export]
macro_rules! gemma_fixture_tests {
    ($run:path) => {
        #[test]
        fn tiny_gemma3() {
            $run("tiny-gemma3");
        }
        #[test]
        fn tiny_gemma3_gguf() {
            $run("tiny-gemma3-gguf");
        }
        #[test]
        fn tiny_gemma3_multimodal_text() {
            $run("tiny-gemma3-mm");
        }
        #[test]
        fn tiny_gemma() {
            $run("tiny-gemma");
        }
        #[test]
        fn tiny_gemma_gguf() {
            $run("tiny-gemma-gguf");
        }
        #[test]
        fn tiny_gemma2() {
            $run("tiny-gemma2");
        }
        #[test]
        fn tiny_gemma2_gguf() {
            $run("tiny-gemma2-gguf");
        }
        #[test]
        fn tiny_vaultgemma() {
            $run("tiny-vaultgemma");
        }
    };
}

/// One `#[test]` per Granite fixture of this repository (`tiny_granite`: IBM Granite's
/// multipliers of the embedding, the attention scores, each residual branch and the logits, two
/// adapters (one on o_proj and down_proj, whose outputs the residual multiplier scales);
/// `tiny_granite_gguf`: llama.cpp's `granite` file; made by `tests/fixtures/make_granite.py`),
/// each calling `$run("<fixture folder>")`. The multipliers are the `scale` op and the
/// attention's scale: run where the plain fixtures run.
#[macro_export]
macro_rules! granite_fixture_tests {
    ($run:path) => {
        #[test]
        fn tiny_granite() {
            $run("tiny-granite");
        }
        #[test]
        fn tiny_granite_gguf() {
            $run("tiny-granite-gguf");
        }
    };
}

/// One `#[test]` per SmolLM3 fixture of this repository (`tiny_smollm3`: a NoPE layer given by
/// `no_rope_layers`, sliding by its `layer_types`, two adapters; `tiny_smollm3_gguf`: llama.cpp's
/// `smollm3` file, every fourth layer NoPE; made by `tests/fixtures/make_smollm3.py`), each
/// calling `$run("<fixture folder>")`. NoPE layers rotate by an identity table: run where the
/// plain fixtures run.
#[macro_export]
macro_rules! smollm3_fixture_tests {
    ($run:path) => {
        #[test]
        fn tiny_smollm3() {
            $run("tiny-smollm3");
        }
        #[test]
        fn tiny_smollm3_gguf() {
            $run("tiny-smollm3-gguf");
        }
    };
}

/// One `#[test]` per fixture of this repository with OLMo 2's norms (`tiny_olmo2`: no norms before the
/// sub-blocks, norms after them, the query and key normed over all heads at once, two adapters
/// (one on q_proj and k_proj, whose outputs those norms read); `tiny_olmo2_gguf`: llama.cpp's
/// `olmo2` file; made by `tests/fixtures/make_olmo2.py`; `tiny_olmo3`: OLMo 3's sliding layers,
/// chosen by `layer_types`, rotating unscaled at a base of their own beside a YaRN
/// full-attention layer; `tiny_olmo3_gguf`: llama.cpp's `olmo2` file with a window; made by
/// `tests/fixtures/make_olmo3.py`; `tiny_exaone4`: per-head query/key norms, sliding layers
/// beside a NoPE full-attention layer, Llama 3 RoPE scaling, two adapters; `tiny_exaone4_gguf`:
/// llama.cpp's `exaone4` file of three layers, unwindowed; made by
/// `tests/fixtures/make_exaone4.py`), each calling `$run("<fixture folder>")`. Existing ops in
/// another order, and a second RoPE table: run where the plain fixtures run.
#[macro_export]
macro_rules! post_norm_fixture_tests {
    ($run:path) => {
        #[test]
        fn tiny_olmo2() {
            $run("tiny-olmo2");
        }
        #[test]
        fn tiny_olmo2_gguf() {
            $run("tiny-olmo2-gguf");
        }
        #[test]
        fn tiny_olmo3() {
            $run("tiny-olmo3");
        }
        #[test]
        fn tiny_olmo3_gguf() {
            $run("tiny-olmo3-gguf");
        }
        #[test]
        fn tiny_exaone4() {
            $run("tiny-exaone4");
        }
        #[test]
        fn tiny_exaone4_gguf() {
            $run("tiny-exaone4-gguf");
        }
    };
}

/// One `#[test]` per fixture of a Llama variant that needs no step of its own (`tiny_seed_oss`:
/// Seed-OSS's q/k/v and o_proj biases, heads wider than hidden / heads, two adapters;
/// `tiny_seed_oss_gguf`: llama.cpp's `seed_oss` file, its feed-forward input norm named
/// `post_attention_norm`; made by `tests/fixtures/make_seed_oss.py`; `tiny_ministral`:
/// Ministral's window per layer from `layer_types`, made by `make_ministral.py`; `tiny_exaone`:
/// EXAONE 3.5's checkpoint names and Hub-layout config, Llama-3 scaling, an adapter under EXAONE's
/// names and one under Llama's; `tiny_exaone_gguf`: llama.cpp's `exaone` file, the scaling as
/// `rope_freqs.weight`; made by `make_exaone.py`; `tiny_internlm3`: `qkv_bias` and `bias`,
/// dynamic NTK scaling within the context, made by `make_internlm3.py`; `tiny_hunyuan`:
/// HunYuan's query/key norms after RoPE and its NTK-alpha base, made by `make_hunyuan.py`;
/// `tiny_olmo`: OLMo's LayerNorms without weights and its `clip_qkv`; `tiny_olmo_gguf`:
/// llama.cpp's `olmo` file, its `clamp_kqv`; made by `make_olmo.py`; `tiny_qwen3_fp8`: an FP8
/// checkpoint's F8_E4M3 weights times their 16×32 block scales, one linear left in BF16;
/// `tiny_mistral_fp8`: one scale per weight and a static scheme's activation scales;
/// `tiny_llama_ct_fp8`: compressed-tensors' FP8 form, a BF16 scale per output channel, the
/// product rounded to BF16; made by `make_fp8.py`),
/// each calling
/// `$run("<fixture folder>")`. Llama's computation with biases, windows, a clamp: run where the plain
/// fixtures run.
#[macro_export]
macro_rules! llama_variant_fixture_tests {
    ($run:path) => {
        #[test]
        fn tiny_olmo() {
            $run("tiny-olmo");
        }
        #[test]
        fn tiny_olmo_gguf() {
            $run("tiny-olmo-gguf");
        }
        #[test]
        fn tiny_qwen3_fp8() {
            $run("tiny-qwen3-fp8");
        }
        #[test]
        fn tiny_mistral_fp8() {
            $run("tiny-mistral-fp8");
        }
        #[test]
        fn tiny_llama_ct_fp8() {
            $run("tiny-llama-ct-fp8");
        }
        #[test]
        fn tiny_seed_oss() {
            $run("tiny-seed-oss");
        }
        #[test]
        fn tiny_seed_oss_gguf() {
            $run("tiny-seed-oss-gguf");
        }
        #[test]
        fn tiny_ministral() {
            $run("tiny-ministral");
        }
        #[test]
        fn tiny_exaone() {
            $run("tiny-exaone");
        }
        #[test]
        fn tiny_exaone_gguf() {
            $run("tiny-exaone-gguf");
        }
        #[test]
        fn tiny_internlm3() {
            $run("tiny-internlm3");
        }
        #[test]
        fn tiny_hunyuan() {
            $run("tiny-hunyuan");
        }
    };
}

/// One `#[test]` per fixture whose RoPE turns adjacent pairs `(2i, 2i + 1)` of each head
/// (`tiny_glm4`: GLM-4-0414's output norms, q/k/v biases, gate/up stacked, RoPE on half of each
/// head, a Hub-layout config, two adapters, one on `gate_up_proj`; `tiny_glm`: GLM without the
/// output norms, 128-wide heads by default, YaRN on the rotated part; `tiny_glm4_gguf`:
/// llama.cpp's `glm4` file; `tiny_glm_chatglm_gguf`: its `chatglm` file, q/k/v and their biases
/// stacked in two layers of three; made by `tests/fixtures/make_glm.py`; `tiny_ernie4_5`: ERNIE 4.5
/// over whole heads, biases on every projection, tied by default; `tiny_ernie4_5_gguf`:
/// llama.cpp's `ernie4_5` file; made by `make_ernie.py`; `tiny_helium`: Helium's q/k/v and MLP
/// biases, none on o_proj; made by `make_helium.py`), each calling
/// `$run("<fixture folder>")`. Llama's computation once loading has reordered the query and
/// key rows: run where the plain fixtures run.
#[macro_export]
macro_rules! pair_rope_fixture_tests {
    ($run:path) => {
        #[test]
        fn tiny_glm4() {
            $run("tiny-glm4");
        }
        #[test]
        fn tiny_glm() {
            $run("tiny-glm");
        }
        #[test]
        fn tiny_glm4_gguf() {
            $run("tiny-glm4-gguf");
        }
        #[test]
        fn tiny_glm_chatglm_gguf() {
            $run("tiny-glm-chatglm-gguf");
        }
        #[test]
        fn tiny_ernie4_5() {
            $run("tiny-ernie4_5");
        }
        #[test]
        fn tiny_ernie4_5_gguf() {
            $run("tiny-ernie4_5-gguf");
        }
        #[test]
        fn tiny_helium() {
            $run("tiny-helium");
        }
    };
}

/// One `#[test]` per compatibility fixture (`../shared/fixtures/compat`): sliding-window
/// Mistral and Qwen2, every PEFT `target_modules` form, and a tied checkpoint stored as
/// `lm_head.weight` only; each calling `$run("compat/<folder>")`.
#[macro_export]
macro_rules! compat_fixture_tests {
    ($run:path) => {
        #[test]
        fn compat_mistral_sliding_window() {
            $run("compat/tiny-mistral-sw");
        }
        #[test]
        fn compat_qwen2_sliding_window_per_layer() {
            $run("compat/tiny-qwen2-sw");
        }
        #[test]
        fn compat_peft_target_module_forms() {
            $run("compat/tiny-llama-peft-names");
        }
        #[test]
        fn compat_tied_lm_head_only() {
            $run("compat/tiny-llama-tied-lmhead-only");
        }
    };
}

/// One `#[test]` per fixture of a LayerNorm model with parallel blocks (`tiny_cohere`: Cohere's
/// LayerNorms, attention and feed-forward on one normed input, adjacent-pair RoPE, q/k/v/o
/// biases, `logit_scale`, tied; `tiny_cohere_qk`: Command R+'s LayerNorms of each head's query
/// and key, a weight per head; `tiny_cohere2`: Cohere 2's sliding layers beside a NoPE
/// full-attention layer; `tiny_cohere2_gguf`: llama.cpp's `cohere2` file; made by
/// `tests/fixtures/make_cohere.py`), each calling
/// `$run("<fixture folder>")`. They need the `center` op (the residual stream kept centered).
#[macro_export]
macro_rules! cohere_fixture_tests {
    ($run:path) => {
        #[test]
        fn tiny_cohere() {
            $run("tiny-cohere");
        }
        #[test]
        fn tiny_cohere_qk() {
            $run("tiny-cohere-qk");
        }
        #[test]
        fn tiny_cohere2() {
            $run("tiny-cohere2");
        }
        #[test]
        fn tiny_cohere2_gguf() {
            $run("tiny-cohere2-gguf");
        }
    };
}

/// One `#[test]` per fixture of a LayerNorm-with-bias model (made by
/// `tests/fixtures/make_stablelm.py`): `tiny_stablelm` (StableLM: norm biases, RoPE on a quarter
/// of each head, q/k/v biases, untied), `tiny_stablelm_par` (its `use_parallel_residual` and
/// StableLM 2 12B's per-head query/key LayerNorms, tied),
/// `tiny_starcoder2` (an ungated GELU feed-forward as `c_fc`/`c_proj`, biases everywhere, a
/// window, tied), `tiny_phi` (Phi-2: parallel blocks, an ungated `fc1`/`fc2`, RoPE on half of
/// each head, `dense` for o_proj, `final_layernorm`, a head bias), and llama.cpp's files of the
/// three (`tiny_phi_gguf`: `phi2`, q/k/v stacked in `attn_qkv`; `tiny_stablelm_gguf`, with
/// `attn_q_norm`/`attn_k_norm` a weight per head;
/// `tiny_starcoder2_gguf`: no window; each with layer 0 in Q8_0), and GPT-NeoX's
/// (`make_gpt_neox.py`: `tiny_gpt_neox`, parallel blocks with a norm each, q/k/v stacked per head,
/// the exact GELU, untied; `tiny_gpt_neox_seq`, sequential, tied, no attention biases), and
/// Falcon's (`make_falcon.py`: `tiny_falcon`, Falcon-40B's new architecture, q/k/v per group of
/// two heads over two key/value heads, `ln_attn` and `ln_mlp`, biases, untied; `tiny_falcon_mq`,
/// Falcon-7B's multi-query attention and one norm side by side, no biases, tied;
/// `tiny_falcon_seq`, q/k/v per head, sequential, biases, GELU's tanh form, untied;
/// `tiny_falcon_gguf`, llama.cpp's `falcon` file of Falcon-40B's layout: `attn_qkv` as [q; k; v],
/// `attn_norm_2`, layer 0 in Q8_0), and GPT-J's (`make_gptj.py`: `tiny_gptj`, one norm read side
/// by side, RoPE in adjacent pairs on half of each head, a head bias, untied; `tiny_gptj_full`,
/// the whole head rotated, tied), each calling
/// `$run("<fixture folder>")`. They need the `add_bias`, `gelu` and `gelu_erf` ops.
#[macro_export]
macro_rules! norm_bias_fixture_tests {
    ($run:path) => {
        #[test]
        fn tiny_stablelm() {
            $run("tiny-stablelm");
        }
        #[test]
        fn tiny_stablelm_par() {
            $run("tiny-stablelm-par");
        }
        #[test]
        fn tiny_starcoder2() {
            $run("tiny-starcoder2");
        }
        #[test]
        fn tiny_phi() {
            $run("tiny-phi");
        }
        #[test]
        fn tiny_phi_gguf() {
            $run("tiny-phi-gguf");
        }
        #[test]
        fn tiny_stablelm_gguf() {
            $run("tiny-stablelm-gguf");
        }
        #[test]
        fn tiny_starcoder2_gguf() {
            $run("tiny-starcoder2-gguf");
        }
        #[test]
        fn tiny_gpt_neox() {
            $run("tiny-gpt-neox");
        }
        #[test]
        fn tiny_gpt_neox_seq() {
            $run("tiny-gpt-neox-seq");
        }
        #[test]
        fn tiny_falcon() {
            $run("tiny-falcon");
        }
        #[test]
        fn tiny_falcon_mq() {
            $run("tiny-falcon-mq");
        }
        #[test]
        fn tiny_falcon_seq() {
            $run("tiny-falcon-seq");
        }
        #[test]
        fn tiny_falcon_gguf() {
            $run("tiny-falcon-gguf");
        }
        #[test]
        fn tiny_gptj() {
            $run("tiny-gptj");
        }
        #[test]
        fn tiny_gptj_full() {
            $run("tiny-gptj-full");
        }
    };
}
