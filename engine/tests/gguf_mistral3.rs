//! llama.cpp's `mistral3` GGUFs (Ministral 3's text model, as its converter's `Ministral3Model`
//! writes them) as its loader and llama-context.cpp read them: YaRN with the betas of the file,
//! the cos/sin factor `mscale(factor, 1) / mscale(factor, yarn_log_multiplier)`, and Llama 4's
//! attention temperature (`attention.temperature_scale` over YaRN's original context). The
//! logits against transformers: the golden runs' `tiny_ministral3` (HF); a converted file was
//! checked once against llama.cpp, past the temperature's step too (the notes of stops 80, 81).

#[allow(dead_code)]
#[path = "gguf/family_files.rs"]
mod family_files;
#[allow(dead_code)]
#[path = "gguf/writer.rs"]
mod writer;

use dlp_engine::config::{yarn_mscale, Arch, AttnTemperature, RopeScaling};
use family_files::{gguf, read, refused};
use writer::M;

/// Ministral-3-8B's keys as the converter writes them, with `change` over them.
fn ministral3(change: Vec<(&'static str, M)>) -> Vec<u8> {
    let mut keys = vec![
        ("mistral3.context_length", M::U32(262_144)),
        ("mistral3.rope.scaling.type", M::Str("yarn")),
        ("mistral3.rope.scaling.factor", M::F32(16.0)),
        (
            "mistral3.rope.scaling.original_context_length",
            M::U32(16384),
        ),
        ("mistral3.rope.scaling.yarn_beta_fast", M::F32(32.0)),
        ("mistral3.rope.scaling.yarn_beta_slow", M::F32(1.0)),
        ("mistral3.rope.scaling.yarn_log_multiplier", M::F32(1.0)),
        ("mistral3.attention.temperature_scale", M::F32(0.1)),
    ];
    keys.retain(|(k, _)| !change.iter().any(|(c, _)| c == k));
    keys.extend(change);
    gguf("mistral3", 2, 64, 4, 16, keys)
}

fn yarn(c: &dlp_engine::config::ModelConfig) -> dlp_engine::config::YarnScaling {
    match &c.rope_scaling {
        Some(RopeScaling::Yarn(y)) => *y,
        other => panic!("{other:?}"),
    }
}

#[test]
fn mistral3_reads_as_llama_cpp() {
    let c = read("m.gguf", &ministral3(vec![])).unwrap();
    assert_eq!(c.arch, Arch::Ministral3);
    let y = yarn(&c);
    assert_eq!(
        (y.factor, y.original_max_position_embeddings),
        (16.0, 16384.0)
    );
    assert_eq!((y.beta_fast, y.beta_slow), (32.0, 1.0));
    // mscale_all_dim 1 (the log multiplier): the factors cancel, as transformers' do.
    assert!(
        (y.attention_factor - 1.0).abs() < 1e-12,
        "{}",
        y.attention_factor
    );
    // The f32 of the file.
    let t = AttnTemperature {
        beta: f64::from(0.1f32),
        step: 16384,
    };
    assert_eq!(c.attn_temperature, Some(t));
    assert_eq!(c.context_limit(), 262_144);
    // Another multiplier and other betas, read as llama.cpp reads them for mistral3.
    let c = read(
        "m2.gguf",
        &ministral3(vec![
            ("mistral3.rope.scaling.yarn_log_multiplier", M::F32(0.5)),
            ("mistral3.rope.scaling.yarn_beta_fast", M::F32(16.0)),
        ]),
    )
    .unwrap();
    let y = yarn(&c);
    let want = yarn_mscale(16.0, 1.0) / yarn_mscale(16.0, 0.5);
    assert!(
        (y.attention_factor - want).abs() < 1e-6,
        "{} {want}",
        y.attention_factor
    );
    assert_eq!(y.beta_fast, 16.0);
    // A negative one, which llama.cpp takes as it comes.
    let c = read(
        "m5.gguf",
        &ministral3(vec![(
            "mistral3.rope.scaling.yarn_log_multiplier",
            M::F32(-1.0),
        )]),
    )
    .unwrap();
    let want = yarn_mscale(16.0, 1.0) / yarn_mscale(16.0, -1.0);
    assert!((yarn(&c).attention_factor - want).abs() < 1e-6);
    // No temperature at 0.
    let mut keys = ministral3(vec![("mistral3.attention.temperature_scale", M::F32(0.0))]);
    let c = read("m3.gguf", &keys).unwrap();
    assert_eq!((c.attn_temperature, c.context_limit()), (None, 262_144));
    // Without YaRN the temperature steps by the original context, else the trained one.
    keys = ministral3(vec![("mistral3.rope.scaling.type", M::Str("none"))]);
    let c = read("m4.gguf", &keys).unwrap();
    assert!(c.rope_scaling.is_none());
    assert_eq!(c.attn_temperature.map(|t| t.step), Some(16384));
}

#[test]
fn mistral3_refusals() {
    refused(
        "t.gguf",
        &ministral3(vec![(
            "mistral3.attention.temperature_scale",
            M::F32(f32::NAN),
        )]),
        "`mistral3.attention.temperature_scale` is NaN; expected a finite number",
    );
    refused(
        "b.gguf",
        &ministral3(vec![("mistral3.rope.scaling.yarn_beta_slow", M::F32(-1.0))]),
        "`mistral3.rope.scaling.yarn_beta_slow` is -1; expected a finite number > 0",
    );
    refused(
        "l.gguf",
        &ministral3(vec![(
            "mistral3.rope.scaling.yarn_log_multiplier",
            M::F32(-10.0),
        )]),
        "`mistral3.rope.scaling.yarn_log_multiplier` -10 makes YaRN's cos/sin factor",
    );
    // DeepSeek's log multiplier in another architecture's file is still refused.
    let llama = gguf(
        "llama",
        1,
        64,
        4,
        16,
        vec![
            ("llama.rope.scaling.type", M::Str("yarn")),
            ("llama.rope.scaling.factor", M::F32(4.0)),
            ("llama.rope.scaling.yarn_log_multiplier", M::F32(0.1)),
        ],
    );
    refused("d.gguf", &llama, "read for mistral3 files only");
}
