"""Makes `rope_vectors.json`: the RoPE inverse frequencies and cos/sin factor transformers
computes (`ROPE_INIT_FUNCTIONS`, modeling_rope_utils.py) for configs with linear, YaRN and
LongRoPE scaling (and Llama 3's and none, for comparison), read by
`engine/tests/rope_scaling.rs`. For LongRoPE, `inv_freq` is the short set and `long_inv_freq`
the long one (transformers' choice for a sequence past the original context).

    python -m venv v && v/bin/pip install torch==2.15.0 transformers==5.25.0
    v/bin/python engine/tests/data/make_rope_vectors.py
"""
import json
import os

from transformers import LlamaConfig, Phi3Config, Qwen2Config
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

HERE = os.path.dirname(os.path.abspath(__file__))

BASE = {"vocab_size": 256, "hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2}

# LongRoPE factors for heads of 128 (64 frequencies), shaped as Phi-3's: near 1 for the fast
# frequencies, rising for the slow ones.
SHORT = [1.0 + 0.02 * i for i in range(64)]
LONG = [1.0 + 0.6 * i for i in range(64)]

CASES = [
    ("llama", {"max_position_embeddings": 4096, "rope_scaling": None}),
    ("llama", {"max_position_embeddings": 4096, "rope_theta": 10000.0,
               "rope_scaling": {"type": "linear", "factor": 2.0}}),
    ("llama", {"max_position_embeddings": 16384, "rope_theta": 1000000.0,
               "rope_scaling": {"rope_type": "linear", "factor": 4.0}}),
    # Qwen2.5's long-context recommendation.
    ("qwen2", {"max_position_embeddings": 131072, "rope_theta": 1000000.0,
               "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}),
    # Qwen3's, head_dim 128.
    ("qwen2", {"max_position_embeddings": 131072, "rope_theta": 1000000.0, "head_dim": 128,
               "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}),
    # No original context: max_position_embeddings stands in.
    ("llama", {"max_position_embeddings": 8192, "rope_theta": 500000.0,
               "rope_scaling": {"rope_type": "yarn", "factor": 8.0}}),
    # Betas, no truncation, an explicit cos/sin factor.
    ("llama", {"max_position_embeddings": 8192, "rope_theta": 10000.0,
               "rope_scaling": {"rope_type": "yarn", "factor": 2.5, "original_max_position_embeddings": 2048,
                                "beta_fast": 16, "beta_slow": 2, "truncate": False, "attention_factor": 0.8}}),
    # DeepSeek's mscale form; a null factor is max / original.
    ("llama", {"max_position_embeddings": 163840, "rope_theta": 10000.0,
               "rope_scaling": {"rope_type": "yarn", "factor": None, "original_max_position_embeddings": 4096,
                                "mscale": 0.707, "mscale_all_dim": 0.707}}),
    ("llama", {"max_position_embeddings": 65536, "rope_theta": 10000.0,
               "rope_scaling": {"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 4096,
                                "mscale": 1.0, "mscale_all_dim": 0.5}}),
    # A factor below 1: no cos/sin factor.
    ("llama", {"max_position_embeddings": 4096, "rope_theta": 10000.0,
               "rope_scaling": {"rope_type": "yarn", "factor": 0.5, "original_max_position_embeddings": 4096}}),
    ("llama", {"max_position_embeddings": 131072, "rope_theta": 500000.0,
               "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}),
    # Phi-3-mini-128k's form (`su`, the original context beside the settings).
    ("phi3", {"max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
              "rope_scaling": {"type": "su", "short_factor": SHORT, "long_factor": LONG}}),
    # Phi-3.5's (`longrope`), and an explicit factor for the default cos/sin factor.
    ("phi3", {"max_position_embeddings": 131072, "original_max_position_embeddings": 4096, "rope_theta": 10000.0,
              "rope_scaling": {"rope_type": "longrope", "short_factor": SHORT, "long_factor": LONG, "factor": 8.0}}),
    # An explicit cos/sin factor; `yarn` is LongRoPE to Phi3Config.
    ("phi3", {"max_position_embeddings": 16384, "original_max_position_embeddings": 2048,
              "rope_scaling": {"type": "yarn", "short_factor": SHORT, "long_factor": LONG, "attention_factor": 1.25}}),
    # No top-level original context: the settings' own.
    ("phi3", {"max_position_embeddings": 32768,
              "rope_scaling": {"rope_type": "longrope", "short_factor": SHORT, "long_factor": LONG,
                               "original_max_position_embeddings": 2048}}),
]


def main():
    out = []
    for model_type, extra in CASES:
        cls = {"llama": LlamaConfig, "qwen2": Qwen2Config, "phi3": Phi3Config}[model_type]
        cfg = cls(**BASE, **extra)
        kind = cfg.rope_parameters["rope_type"]
        inv, factor = ROPE_INIT_FUNCTIONS[kind](cfg, "cpu") if kind != "default" else (
            1.0 / (cfg.rope_parameters["rope_theta"] ** (
                __import__("torch").arange(0, cfg.hidden_size // cfg.num_attention_heads, 2).float()
                / (cfg.hidden_size // cfg.num_attention_heads))), 1.0)
        config = {"model_type": model_type, **BASE, **extra}
        case = {"config": config, "inv_freq": [float(x) for x in inv], "attention_factor": float(factor)}
        if kind == "longrope":
            original = cfg.rope_parameters["original_max_position_embeddings"]
            long, long_factor = ROPE_INIT_FUNCTIONS[kind](cfg, "cpu", seq_len=original + 1)
            assert long_factor == factor
            case["original"] = original
            case["long_inv_freq"] = [float(x) for x in long]
        out.append(case)
    with open(os.path.join(HERE, "rope_vectors.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"{len(out)} cases")


if __name__ == "__main__":
    main()
