"""Writes corpus/gguf/seed_oss-fused-qkv.gguf: corpus/gguf/seed_oss.gguf (float32, q/k/v with
biases) with each layer's attn_q, attn_k and attn_v (weights and biases) stacked by rows, q
first, into one attn_qkv, as llama.cpp's converter writes a file with --fuse-qkv. Its logits
equal the original's (dlp-run splits the stack at load).

    python -m venv v && v/bin/pip install gguf==0.19.0 numpy
    v/bin/python tests/fuzz/make_fused_qkv_seed.py
"""
import os

import gguf
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "corpus/gguf/seed_oss.gguf")
DST = os.path.join(HERE, "corpus/gguf/seed_oss-fused-qkv.gguf")
PARTS = ("attn_q", "attn_k", "attn_v")

r = gguf.GGUFReader(SRC)
w = gguf.GGUFWriter(DST, r.fields["general.architecture"].contents())
for name, f in r.fields.items():
    if name.startswith("GGUF.") or name == "general.architecture":
        continue
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        w.add_array(name, f.contents())
    else:
        w.add_key_value(name, f.contents(), f.types[0])


def values(t):
    """A float32 tensor's values, outermost dimension first (GGUF lists ne[0] first)."""
    assert t.tensor_type == gguf.GGMLQuantizationType.F32, t.name
    return np.asarray(t.data, dtype=np.float32).reshape([int(d) for d in reversed(t.shape)])


by_name = {t.name: t for t in r.tensors}
for t in r.tensors:
    stem, module, suffix = t.name.rsplit(".", 2) if t.name.count(".") >= 2 else ("", "", "")
    if module in PARTS[1:]:
        continue  # written with attn_q
    if module == "attn_q":
        rows = [values(by_name[f"{stem}.{p}.{suffix}"]) for p in PARTS]
        w.add_tensor(f"{stem}.attn_qkv.{suffix}", np.concatenate(rows))
    else:
        w.add_tensor(t.name, values(t))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
