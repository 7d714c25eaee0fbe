//! llama.cpp's LoRA adapter GGUFs (`convert_lora_to_gguf.py`: `general.type` "adapter",
//! tensors `blk.N.attn_q.weight.lora_a`/`.lora_b`) are not read: given as the model or as an
//! adapter, each is refused saying what to pass instead (they said "missing metadata
//! `llama.block_count`" and "is not a directory").

#[allow(dead_code)]
#[path = "gguf/writer.rs"]
mod writer;

use dlp_engine::loader::gguf::GgufFile;
use dlp_engine::loader::peft::PeftAdapter;
use dlp_engine::loader::ModelFiles;
use writer::{Tensor, Writer, M};

/// A `llama` LoRA adapter as llama.cpp's converter writes one: rank 8 on layer 0's q_proj.
fn lora_gguf() -> Vec<u8> {
    let tensor = |name: &str, dims: Vec<u64>| Tensor {
        name: name.into(),
        data: vec![0; 4 * dims.iter().product::<u64>() as usize],
        dims,
        ty: 0,
    };
    Writer {
        version: 3,
        kv: vec![
            ("general.architecture".into(), M::Str("llama")),
            ("general.type".into(), M::Str("adapter")),
            ("adapter.type".into(), M::Str("lora")),
            ("adapter.lora.alpha".into(), M::F32(16.0)),
        ],
        tensors: vec![
            tensor("blk.0.attn_q.weight.lora_a", vec![256, 8]),
            tensor("blk.0.attn_q.weight.lora_b", vec![8, 256]),
        ],
    }
    .bytes()
}

#[test]
fn llama_cpp_lora_ggufs_are_refused_saying_what_to_pass() {
    let dir = std::env::temp_dir().join(format!("dlp-lora-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lora = dir.join("lora.gguf");
    std::fs::write(&lora, lora_gguf()).unwrap();
    // What loading `path` as a model says.
    let refused = |path: &std::path::Path| {
        ModelFiles::load(path)
            .err()
            .expect("not a model")
            .to_string()
    };
    let e = refused(&lora);
    assert!(
        e.contains("lora.gguf: a llama.cpp LoRA adapter (`general.type` \"adapter\"), not a model")
            && e.contains("pass the PEFT adapter folder it was converted from with --adapter"),
        "{e}"
    );
    // Another type than a model's, named.
    let mut w = Writer::copy_of(&GgufFile::open(&lora).unwrap());
    w.kv.retain(|(k, _)| k != "general.type");
    w.kv.push(("general.type".into(), M::Str("mmproj")));
    let other = dir.join("mmproj.gguf");
    std::fs::write(&other, w.bytes()).unwrap();
    let e = refused(&other);
    assert!(
        e.contains("`general.type` is \"mmproj\", not \"model\""),
        "{e}"
    );
    // As an adapter of a model.
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/tiny-llama-gguf/model.gguf");
    let cfg = GgufFile::open(&base).unwrap().config().unwrap();
    let e = PeftAdapter::load("a", &lora, &cfg)
        .expect_err("not read")
        .to_string();
    assert!(
        e.contains("adapter `a`: ")
            && e.contains("lora.gguf is a GGUF file: llama.cpp's LoRA GGUFs are not read; pass the PEFT adapter folder it was converted from"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
