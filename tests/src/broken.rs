//! Broken inputs that load: for the checks that a broken forward pass is reported, never
//! scored or served as an answer.

use std::path::Path;

/// Writes into `dst` (made if missing) a copy of the PEFT adapter folder `src` whose every
/// `lora_B` tensor (f32) is multiplied by `factor`. With 1e30 the values stay finite, so the
/// adapter loads (its alpha/r scale is unchanged), but its update overflows the forward pass:
/// the logits of any token it touches are NaN or infinite. Panics on a file it cannot read
/// (a test's setup).
pub fn scaled_lora_b(src: &Path, dst: &Path, factor: f32) {
    std::fs::create_dir_all(dst).unwrap();
    std::fs::copy(
        src.join("adapter_config.json"),
        dst.join("adapter_config.json"),
    )
    .unwrap();
    let mut bytes = std::fs::read(src.join("adapter_model.safetensors")).unwrap();
    // safetensors: an 8-byte header length, the JSON header, then the data.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut scaled = 0;
    for (name, t) in header.as_object().unwrap() {
        if !name.contains("lora_B") {
            continue;
        }
        assert_eq!(t["dtype"], "F32", "{name}");
        let (from, to) = (
            t["data_offsets"][0].as_u64().unwrap() as usize,
            t["data_offsets"][1].as_u64().unwrap() as usize,
        );
        for v in bytes[8 + n + from..8 + n + to].chunks_exact_mut(4) {
            let x = f32::from_le_bytes(v.try_into().unwrap()) * factor;
            assert!(x.is_finite(), "{name}: {x}");
            v.copy_from_slice(&x.to_le_bytes());
        }
        scaled += 1;
    }
    assert!(scaled > 0, "{}: no lora_B tensor", src.display());
    std::fs::write(dst.join("adapter_model.safetensors"), bytes).unwrap();
}
