#!/usr/bin/env python3
"""The float64 reference of scripts/gpu_check_golden.py: transformers + PEFT logits of every
position of one token sequence, on a model with a weighted mixture of PEFT LoRA adapters, with
the shared fixtures' semantics (../shared/fixtures/README.md): every weight upcast to float64,

    y = W x + sum_k w_k * scaling_k * B_k A_k x      (scaling = lora_alpha / r)

computed by PEFT's own LoRA layers, unmerged (each adapter's scaling multiplied by its weight,
the mixture's adapters active at once; PEFT adds the active adapters' outputs). transformers'
Llama computes RMSNorm's variance and the RoPE angles in float32 inside (about 1e-6 relative,
far below the 2e-3 the engine is held to).

  real_shape_reference.py --model DIR --adapter a0=DIR ... --mix a0=0.5,a1=0.3 --ids 1,2,3 \\
      --out ref.safetensors [--device cuda]

Writes tensor `logits` (float64, [len, vocab]). Needs torch, transformers, peft, safetensors.
"""
import argparse
import sys
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="HF model directory")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=DIR",
                   help="a PEFT adapter under a name (repeatable)")
    p.add_argument("--mix", default="", metavar="NAME=W,...", help="the mixture; empty: base")
    p.add_argument("--ids", required=True, metavar="1,2,3", help="token ids")
    p.add_argument("--out", required=True, metavar="FILE.safetensors")
    p.add_argument("--device", default="cuda", help="torch device (default cuda, else cpu)")
    a = p.parse_args()

    import torch
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    t0 = time.time()
    device = a.device if a.device != "cuda" or torch.cuda.is_available() else "cpu"
    adapters = dict(x.split("=", 1) for x in a.adapter)
    mix = [(n, float(w)) for n, w in (x.split("=", 1) for x in a.mix.split(",") if x)]
    unknown = [n for n, _ in mix if n not in adapters]
    if unknown:
        sys.exit(f"--mix names {', '.join(unknown)}, not loaded with --adapter")
    ids = [int(x) for x in a.ids.strip("[]").split(",") if x.strip()]

    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float64)
    model = model.to(device).eval()
    if mix:
        names = [n for n, _ in mix]
        model = PeftModel.from_pretrained(model, adapters[names[0]], adapter_name=names[0])
        for n in names[1:]:
            model.load_adapter(adapters[n], adapter_name=n)
        model = model.to(device=device, dtype=torch.float64).eval()
        scaled = 0
        for m in model.modules():
            if isinstance(m, LoraLayer):
                for n, w in mix:
                    if n in m.scaling:
                        m.scaling[n] *= w
                        scaled += 1
        if not scaled:
            sys.exit("no LoRA layer of the mixture's adapters found in the model")
        # Every adapter of the mixture active at once: PEFT adds their outputs.
        model.base_model.set_adapter(names)
        active = set(model.base_model.active_adapters)
        if active != set(names):
            sys.exit(f"PEFT activated {sorted(active)}, not {sorted(names)}")
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids], device=device)).logits[0]
    logits = logits.to("cpu", torch.float64).contiguous()
    save_file({"logits": logits}, a.out)
    print(f"reference: {len(ids)} positions x {logits.shape[1]} logits on {device}, mixture "
          f"{a.mix or 'none'}, |logit| up to {logits.abs().max().item():.3g}, "
          f"{time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
