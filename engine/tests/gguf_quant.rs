//! ggml's 5-bit and k-quant types against gguf-py, llama.cpp's own Python package: random
//! blocks of each type and the values gguf-py dequantises them to
//! (`data/quant_vectors.safetensors`, made by `data/make_quant_vectors.py`). Bit for bit: the
//! engine follows ggml's reference order of operations, as gguf-py does.
//! End to end (a Qwen3 GGUF in these types against transformers): the golden runs'
//! `tiny_qwen3_gguf`.

use dlp_engine::loader::gguf::quant;

fn vectors() -> Vec<(String, Vec<u8>, Vec<f32>)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/quant_vectors.safetensors"
    );
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st
        .names()
        .iter()
        .filter_map(|n| n.strip_suffix(".bytes").map(String::from))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let raw = st.tensor(&format!("{n}.bytes")).unwrap().data().to_vec();
            let values = (st.tensor(&format!("{n}.values")).unwrap().data())
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (n, raw, values)
        })
        .collect()
}

fn type_id(name: &str) -> u32 {
    (0..64)
        .find(|&t| quant::type_info(t).is_some_and(|(n, _, _)| n == name))
        .unwrap_or_else(|| panic!("no ggml type named {name}"))
}

#[test]
fn dequantised_as_gguf_py_does() {
    let cases = vectors();
    let names: Vec<&str> = cases.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["IQ4_NL", "IQ4_XS", "Q2_K", "Q3_K", "Q4_K", "Q5_0", "Q5_1", "Q5_K", "Q6_K"],
        "the vectors file holds every type it should"
    );
    for (name, raw, want) in &cases {
        let t = type_id(name);
        assert!(quant::is_supported(t), "{name} is listed as supported");
        assert!(
            quant::SUPPORTED.contains(name.as_str()),
            "{name} in SUPPORTED"
        );
        let mut got = vec![f32::NAN; want.len()];
        quant::dequantize(t, raw, &mut got);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "{name} value {i}: got {g}, gguf-py {w}"
            );
        }
        // One block at a time gives the same values (the row-by-row path).
        let (per, size, _) = quant::type_info(t)
            .map(|(_, b, s)| (b as usize, s as usize, 0))
            .unwrap();
        for (k, block) in raw.chunks_exact(size).enumerate() {
            let mut one = vec![f32::NAN; per];
            quant::dequantize_serial(t, block, &mut one);
            assert_eq!(one, want[k * per..(k + 1) * per], "{name} block {k} alone");
        }
    }
}
