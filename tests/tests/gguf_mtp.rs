//! Next-token-prediction layers appended to a GGUF (`<arch>.nextn_predict_layers`: EXAONE 4.5's
//! and GLM-OCR's multi-token prediction, as llama.cpp's converters write them): loaded by
//! llama.cpp and not run, left unread here. `tiny-exaone4-gguf` with such a layer appended must
//! score every golden case as the file without it does.

#[allow(dead_code)]
#[path = "../../engine/tests/gguf/writer.rs"]
mod writer;

use dlp_engine::cpu::CpuBackend;
use dlp_engine::loader::gguf::GgufFile;
use dlp_tests::{fixtures, run_golden};
use writer::{Tensor, Writer, M};

#[test]
fn prediction_layers_are_left_unread() {
    let Some(fixture) = fixtures("tiny-exaone4-gguf") else {
        return;
    };
    let g = GgufFile::open(&fixture.join("model.gguf")).unwrap();
    let mut w = Writer::copy_of(&g);
    let layers = match w.kv.iter().find(|(k, _)| k == "exaone4.block_count") {
        Some((_, M::Value(v))) => v.as_u64().unwrap(),
        other => panic!("block_count: {:?}", other.map(|(k, _)| k)),
    };
    // The last layer's tensors again as layer `layers`, with the projection of the embedding
    // and hidden state a prediction layer has (`nextn.eh_proj`, [2 * hidden, hidden]).
    let last = format!("blk.{}.", layers - 1);
    let extra: Vec<Tensor> = (w.tensors.iter())
        .filter(|t| t.name.starts_with(&last))
        .map(|t| Tensor {
            name: t.name.replacen(&last, &format!("blk.{layers}."), 1),
            ..t.clone()
        })
        .collect();
    assert!(
        extra.len() >= 9,
        "{} tensors in layer {}",
        extra.len(),
        layers - 1
    );
    w.tensors.extend(extra);
    w.tensors.push(Tensor {
        name: format!("blk.{layers}.nextn.eh_proj.weight"),
        dims: vec![128, 64],
        ty: 0,
        data: vec![0; 4 * 128 * 64],
    });
    w.kv.retain(|(k, _)| k != "exaone4.block_count");
    w.kv.push(("exaone4.block_count".into(), M::U32(layers as u32 + 1)));
    w.kv.push(("exaone4.nextn_predict_layers".into(), M::U32(1)));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.gguf"), w.bytes()).unwrap();
    for f in ["golden.json", "golden.safetensors"] {
        std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
    }
    let c = GgufFile::open(&dir.path().join("model.gguf"))
        .and_then(|g| g.config())
        .unwrap();
    assert_eq!(c.num_layers as u64, layers);
    run_golden(dir.path().to_str().unwrap(), CpuBackend::new());
}
