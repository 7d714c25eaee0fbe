"""Writes quant_vectors.safetensors: random ggml blocks of each type dlp-run dequantises beyond
Q4_0/Q4_1/Q8_0, and their values as gguf-py (llama.cpp's own Python package, an independent
implementation of ggml's dequantize_row_*) computes them. Read by engine/tests/gguf_quant.rs.

    python -m venv v && v/bin/pip install gguf==0.19.0 safetensors numpy
    v/bin/python engine/tests/data/make_quant_vectors.py

Tensors: `<TYPE>.bytes` (u8, whole blocks) and `<TYPE>.values` (f32, what they hold).
"""
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize
from safetensors.numpy import save_file

# Byte offsets of each block's f16 fields (scales, mins): set to finite values, so that no
# block holds an inf or NaN (which the comparison could not tell apart); every other byte is
# random, the last block all 0xFF but for its f16 fields.
HALVES = {
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
    T.IQ4_NL: [0],
    T.IQ4_XS: [0],
}

rng = np.random.default_rng(20261205)
out = {}
for qt, halves in HALVES.items():
    block, size = GGML_QUANT_SIZES[qt]
    n_blocks = 6
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    raw[-1, :] = 0xFF
    for b in range(n_blocks):
        for off in halves:
            scale = np.float16(rng.uniform(-0.05, 0.05) * (10.0 ** rng.integers(-3, 2)))
            raw[b, off:off + 2] = np.frombuffer(scale.tobytes(), dtype=np.uint8)
    values = dequantize(raw.reshape(-1), qt).astype(np.float32).reshape(-1)
    assert values.size == n_blocks * block and np.isfinite(values).all()
    out[f"{qt.name}.bytes"] = raw.reshape(-1)
    out[f"{qt.name}.values"] = values
save_file(out, os.path.join(os.path.dirname(os.path.abspath(__file__)), "quant_vectors.safetensors"))
