//! HF model folders whose files are cut, corrupt, or disagree with their index.

use super::*;

#[test]
fn truncated_and_corrupt_model_files() {
    let Some((_t, d)) = tmp_copy("tiny-llama") else {
        return;
    };
    let shard = d.join("model-00003-of-00014.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    must_contain(
        &err_of(ModelFiles::load(&d)),
        &["model-00003-of-00014.safetensors", "truncated or corrupt"],
    );
    std::fs::write(&shard, b"garbage").unwrap();
    must_contain(
        &err_of(ModelFiles::load(&d)),
        &["model-00003-of-00014.safetensors"],
    );
    std::fs::write(
        d.join("model.safetensors.index.json"),
        b"{\"weight_map\": {\"a\": ",
    )
    .unwrap();
    must_contain(
        &err_of(ModelFiles::load(&d)),
        &["model.safetensors.index.json", "not valid JSON"],
    );
    std::fs::write(
        d.join("model.safetensors.index.json"),
        b"{\"weight_map\": {\"a\": \"missing.safetensors\"}}",
    )
    .unwrap();
    must_contain(
        &err_of(ModelFiles::load(&d)),
        &[
            "model.safetensors.index.json",
            "missing.safetensors",
            "does not exist",
        ],
    );
}

/// An index that disagrees with its shards (a tensor moved or renamed since it was written) is
/// named, entry and shards (a renamed tensor had loaded by luck, a moved one was "missing").
#[test]
fn a_stale_shard_index_is_named() {
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 4] = [
        ("names shard `model-00004-of-00014.safetensors`, but the tensor is in `model-00005",
            |v| {
                let m = &mut v["weight_map"];
                m["model.layers.0.mlp.up_proj.weight"] = "model-00004-of-00014.safetensors".into();
                // Shard 5 still listed (by a name it does not hold), so it is read.
                m["extra.weight"] = "model-00005-of-00014.safetensors".into();
            },
        ),
        ("shard `model-00005-of-00014.safetensors` holds tensor `model.layers.0.mlp.up_proj.weight`, which weight_map does not list", |v| {
            let m = v["weight_map"].as_object_mut().unwrap();
            let shard = m.remove("model.layers.0.mlp.up_proj.weight").unwrap();
            m.insert("model.layers.0.mlp.upp_proj.weight".into(), shard);
        }),
        ("weight_map[`extra.weight`] names shard `model-00005-of-00014.safetensors`, which does not hold it", |v| {
            v["weight_map"]["extra.weight"] = "model-00005-of-00014.safetensors".into()
        }),
        // Moved to a shard no other entry names: not read at all, so the entry is the error.
        (
            "weight_map[`model.layers.0.mlp.up_proj.weight`] names shard `model-00004-of-00014.safetensors`, which does not hold it",
            |v| {
                v["weight_map"]["model.layers.0.mlp.up_proj.weight"] =
                    "model-00004-of-00014.safetensors".into()
            },
        ),
    ];
    for (needle, edit) in edits {
        let Some((_t, d)) = tmp_copy("tiny-llama") else {
            return;
        };
        edit_json(&d.join("model.safetensors.index.json"), edit);
        let e = err_of(ModelFiles::load(&d));
        must_contain(&e, &["model.safetensors.index.json", needle]);
    }
}
