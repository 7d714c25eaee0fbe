//! What users bring from llama.cpp and transformers, and from the server's names: llama.cpp's
//! `--lora` flags answered with their forms here, an HF checkpoint's file given for its folder,
//! adapter and base-model names the server could not route to. Refused, each with the way to
//! say it here.

use super::{args, fails_with};
use dlp_tests::fixtures;

#[test]
fn habits_from_elsewhere_get_their_forms_here() {
    let Some(d) = fixtures("smollm2") else { return };
    let gguf = d.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let m = gguf.to_str().unwrap();
    let gen_cpu = ["generate", "--backend", "cpu", "-m", m];
    let space = format!("a b={}", d.join("adapters/qv_r8").display());
    fails_with(
        &args(&gen_cpu, &["--adapter", &space, "--prompt", "hi"]),
        &["the name `a b` must not contain whitespace"],
    );
    // An HF checkpoint's weights file given for its folder: the folder named.
    let tiny =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-jais2");
    let weights = tiny.join("model.safetensors");
    fails_with(
        &[
            "score",
            "-m",
            weights.to_str().unwrap(),
            "--ids",
            "1",
            "--out",
            "x.safetensors",
        ],
        &["a file of an HF checkpoint, not a model; pass the folder that holds config.json"],
    );
    // The base model's name is a request's `model`: `auto` (the router's) and "" refused.
    for name in ["auto", ""] {
        fails_with(
            &["serve", "-m", m, "--served-model-name", name, "--port", "0"],
            &[&format!(
                "--served-model-name `{name}`: the base model's name must not be empty or `auto`"
            )],
        );
    }
    // llama.cpp's flags: their forms here.
    let lora = d.join("adapters/qv_r8").display().to_string();
    fails_with(
        &args(&gen_cpu, &["--lora", &lora, "--prompt", "hi"]),
        &[
            "llama.cpp's flag",
            &format!("--adapter a={lora}"),
            "`--mix a=1`",
        ],
    );
    fails_with(
        &args(
            &gen_cpu,
            &[
                "--lora",
                &lora,
                "--lora-scaled",
                "x y",
                "0.5",
                "--prompt",
                "hi",
            ],
        ),
        &[
            "llama.cpp's flags",
            &format!("--adapter a={lora} --adapter b='x y'"),
            "`--mix a=1,b=0.5`",
        ],
    );
}
