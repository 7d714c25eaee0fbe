//! The golden tests of the fixtures whose attention scores, norms or projections differ from
//! plain Llama's, as a macro each test target expands over its backend in the modes that round
//! on purpose (and on CUDA beside its experimental paths).

/// One `#[test]` per fixture whose attention scores are not plain `rope(q).rope(k) /
/// sqrt(head_dim)` (`tiny_gemma2`: Gemma 2's soft-capped scores and logits and its own scale;
/// `tiny_vaultgemma`: those without Gemma 2's norms after each sub-block; `tiny_olmo`: LayerNorms
/// without weights through the `center` op, the query, key and value clamped; `tiny_granite`:
/// Granite's score, residual and logit multipliers; `tiny_smollm3`: a NoPE layer, unrotated;
/// `tiny_olmo2`: its query and key normed over all heads, its linears reading
/// the residual stream unnormed; `tiny_olmo3`: that, and sliding layers rotating by a table of
/// their own beside a YaRN full-attention layer; `tiny_exaone4`: OLMo 2's norms, sliding layers
/// beside a NoPE full-attention layer; `tiny_glm4`: norms before and after each sub-block, RoPE on
/// half of each head in adjacent pairs; `tiny_cohere`, `tiny_cohere_qk`, `tiny_cohere2`: LayerNorms
/// through the `center` op, parallel blocks, Command R+'s per-head query/key norms, and Cohere 2's
/// NoPE layer; `tiny_stablelm`, `tiny_stablelm_par` (StableLM 2 12B's per-head query/key norms), `tiny_starcoder2`,
/// `tiny_phi`: LayerNorms with biases, ungated GELU feed-forwards, Phi's head bias; `tiny_gpt_neox`:
/// a norm for each side of a parallel block, the exact GELU; `tiny_falcon`: that with q/k/v
/// stacked per key/value group over two key/value heads; `tiny_gptj`: RoPE in adjacent pairs on
/// half of each head, a head bias; `tiny_nemotron`: LayerNorm1P, RoPE on half of each head, the
/// squared ReLU; `tiny_arcee`: the squared ReLU under RMSNorms, YaRN; `tiny_apertus`: xIELU with
/// each layer's constants, per-head query/key norms, Llama 3's RoPE scaling; `tiny_jais2`:
/// LayerNorms with biases and the squared ReLU; `tiny_ministral3`: YaRN, Ministral 3's attention
/// temperature; `tiny_hunyuan`: query/key norms after RoPE), each calling
/// `$run("<fixture folder>")`: in the modes that round on
/// purpose (bf16 weights or compute, bf16 LoRA, the bf16 KV cache; on the CPU the bounds the
/// CUDA modes are held to), and on CUDA beside its experimental paths (which capped scores must
/// leave for the plain attention kernel, which must take Granite's scale, and whose fused RoPE
/// must pass a NoPE layer's identity table through).
#[macro_export]
macro_rules! scored_fixture_tests {
    ($run:path) => {
        #[test]
        fn tiny_gemma2() {
            $run("tiny-gemma2");
        }
        #[test]
        fn tiny_vaultgemma() {
            $run("tiny-vaultgemma");
        }
        #[test]
        fn tiny_olmo() {
            $run("tiny-olmo");
        }
        #[test]
        fn tiny_granite() {
            $run("tiny-granite");
        }
        #[test]
        fn tiny_smollm3() {
            $run("tiny-smollm3");
        }
        #[test]
        fn tiny_olmo2() {
            $run("tiny-olmo2");
        }
        #[test]
        fn tiny_olmo3() {
            $run("tiny-olmo3");
        }
        #[test]
        fn tiny_exaone4() {
            $run("tiny-exaone4");
        }
        #[test]
        fn tiny_glm4() {
            $run("tiny-glm4");
        }
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
        fn tiny_gpt_neox() {
            $run("tiny-gpt-neox");
        }
        #[test]
        fn tiny_falcon() {
            $run("tiny-falcon");
        }
        #[test]
        fn tiny_gptj() {
            $run("tiny-gptj");
        }
        #[test]
        fn tiny_nemotron() {
            $run("tiny-nemotron");
        }
        #[test]
        fn tiny_arcee() {
            $run("tiny-arcee");
        }
        #[test]
        fn tiny_apertus() {
            $run("tiny-apertus");
        }
        #[test]
        fn tiny_jais2() {
            $run("tiny-jais2");
        }
        #[test]
        fn tiny_ministral3() {
            $run("tiny-ministral3");
        }
        #[test]
        fn tiny_hunyuan() {
            $run("tiny-hunyuan");
        }
    };
}
