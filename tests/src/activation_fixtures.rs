//! The golden tests of the families whose feed-forward needs an activation op of its own
//! (`relu_sq`, `xielu`), as a macro each test target expands over its backend.

/// One `#[test]` per fixture of a model with an ungated feed-forward of its own activation
/// (`tests/fixtures/make_arcee.py`, `make_nemotron.py`, `make_apertus.py`): `tiny_arcee` (Arcee:
/// Llama with an ungated `up_proj`/`down_proj` feed-forward, the squared ReLU, GQA, YaRN,
/// untied), `tiny_nemotron` (Nemotron: LayerNorm1P norms, weight + 1 and a bias, RoPE in halves
/// on half of each head, heads wider than hidden / heads, biases on q/k/v/o and the feed-forward,
/// the squared ReLU, untied), `tiny_nemotron_plain` (no linear biases, tied, the classes' RoPE
/// defaults), `tiny_apertus` (Apertus: xIELU with each layer's constants, per-head query/key
/// norms, biases on q/k/v/o, Llama 3's RoPE scaling, untied), `tiny_apertus1p5`
/// (`make_apertus1p5.py`: Apertus 1.5's text-and-media checkpoint, its media tokenizers left
/// out, an embedding of 256 rows and a head pruned to 200 logits, prompts with input-only ids),
/// `tiny_jais2` (`make_jais2.py`:
/// Jais 2, LayerNorms with biases, the squared ReLU, biases on q/k/v/o and the feed-forward,
/// untied), and llama.cpp's files of these
/// (`tiny_arcee_gguf`: q/k rows permuted, YaRN's keys; `tiny_nemotron_gguf`, of
/// `tiny-nemotron-plain`: the norms stored with the 1 added, `rope.dimension_count` 8 of 16;
/// `tiny_apertus_gguf`: the xIELU constants in `xielu.*` metadata, `rope_freqs`; each with layer 0
/// in Q8_0), each calling `$run("<fixture folder>")`.
#[macro_export]
macro_rules! activation_fixture_tests {
    ($run:path) => {
        #[test]
        fn tiny_arcee() {
            $run("tiny-arcee");
        }
        #[test]
        fn tiny_nemotron() {
            $run("tiny-nemotron");
        }
        #[test]
        fn tiny_nemotron_plain() {
            $run("tiny-nemotron-plain");
        }
        #[test]
        fn tiny_apertus() {
            $run("tiny-apertus");
        }
        #[test]
        fn tiny_apertus1p5() {
            $run("tiny-apertus1p5");
        }
        #[test]
        fn tiny_jais2() {
            $run("tiny-jais2");
        }
        #[test]
        fn tiny_arcee_gguf() {
            $run("tiny-arcee-gguf");
        }
        #[test]
        fn tiny_nemotron_gguf() {
            $run("tiny-nemotron-gguf");
        }
        #[test]
        fn tiny_apertus_gguf() {
            $run("tiny-apertus-gguf");
        }
    };
}
