#!/usr/bin/env python3
"""Peer benchmark for `dlp-run bench`: prefill time and decode speed of two reference stacks on
the same GGUF model, prompt token ids and new-token count.

  transformers_base   transformers on CPU torch, float32 (the GGUF dequantized), no adapters
  transformers_peft   the same model with every --adapter loaded by PEFT and all active at once
                      (the DLP-LoRA reference's stack)
  llama_cpp           llama-cpp-python on the GGUF as stored (quantized weights, no adapters)

Greedy decoding, EOS ignored, so every run makes exactly --new-tokens tokens. prefill_secs is the
time to the first token; decode_tokens_per_s = (N-1) / (time for N tokens - time to first token).
One warm-up run, then the median of --repeats runs. A peer that can't be imported or run gets
{"error": ...} in the JSON instead of numbers; the exit code is 1 only if every peer failed.
Run it with .venv-peers/bin/python (see setup.sh).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
import warnings

# Quiet the dequantization progress bars and deprecation chatter on stderr.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore", category=FutureWarning)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gguf", required=True, help="GGUF model file (both stacks load it)")
    p.add_argument("--tokenizer-dir", required=True, help="dir with tokenizer.json and the chat template")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=DIR", help="PEFT adapter (repeatable)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--prompt-ids", metavar="ID,ID,...",
                   help="the prompt's token ids as dlp-run made them (skips the HF tokenizer, so "
                        "both sides prefill the very same ids)")
    p.add_argument("--chat", action=argparse.BooleanOptionalAction, default=True,
                   help="render the prompt as one user message through the chat template (default on)")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peft-mode", choices=["cat", "multi", "both"], default="cat",
                   help="cat: add_weighted_adapter(combination_type='cat', equal weights) -> one adapter of "
                        "rank sum(r); multi: all adapters active side by side (each scaled 1/K); both: report both")
    p.add_argument("--only", choices=["transformers", "llamacpp"])
    p.add_argument("--json", required=True, metavar="OUT.json")
    a = p.parse_args()
    if a.new_tokens < 2:
        p.error("--new-tokens must be >= 2 (decode speed needs a token after the first)")
    if a.prompt_ids is not None:
        try:
            a.prompt_ids = [int(t) for t in a.prompt_ids.split(",") if t.strip()]
        except ValueError:
            p.error(f"--prompt-ids wants comma-separated integers, got {a.prompt_ids!r}")
        if not a.prompt_ids:
            p.error("--prompt-ids is empty")
    a.adapters = {}
    for spec in a.adapter:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            p.error(f"--adapter wants NAME=DIR, got {spec!r}")
        a.adapters[name] = path
    return a


def err(e):
    traceback.print_exc(file=sys.stderr)
    return {"error": f"{type(e).__name__}: {e}"}


def prompt_text_and_ids(a):
    """The prompt as text and token ids. Both stacks get the same ids (from the HF tokenizer), so
    prefill lengths match; without transformers the ids are None and llama.cpp tokenizes itself."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        import jinja2  # fallback: render the chat template by hand
        text = a.prompt
        if a.chat:
            src = open(os.path.join(a.tokenizer_dir, "chat_template.jinja")).read()
            text = jinja2.Template(src).render(messages=[{"role": "user", "content": a.prompt}],
                                               add_generation_prompt=True)
        return text, None
    tok = AutoTokenizer.from_pretrained(a.tokenizer_dir)
    text = a.prompt
    if a.chat:
        text = tok.apply_chat_template([{"role": "user", "content": a.prompt}], tokenize=False,
                                       add_generation_prompt=True)
    return text, tok(text, add_special_tokens=False)["input_ids"]  # the template has its own specials


def summarize(runs, n):
    """runs: list of (prefill_secs, total_secs) -> medians and decode rate."""
    prefill = [r[0] for r in runs]
    decode = [(n - 1) / (t - p) for p, t in runs]
    return {"decode_tokens_per_s": round(statistics.median(decode), 2),
            "prefill_secs": round(statistics.median(prefill), 5),
            "runs": [{"prefill_secs": round(p, 5), "total_secs": round(t, 5)} for p, t in runs]}


def gguf_weight_types(path):
    """Tensor storage types in the GGUF (what llama.cpp computes on), e.g. {"Q4_1": 210, ...}."""
    from collections import Counter
    from gguf import GGUFReader
    ts = GGUFReader(path).tensors
    emb = [t.tensor_type.name for t in ts if t.name == "token_embd.weight"]
    return {"tensor_types": dict(Counter(t.tensor_type.name for t in ts).most_common()),
            "token_embd": emb[0] if emb else None}


# ---------------------------------------------------------------- llama.cpp
def bench_llamacpp(a, text, ids):
    try:
        import numpy as np
        import llama_cpp
        from llama_cpp import Llama
    except Exception as e:
        return err(e)
    try:
        llm = Llama(model_path=a.gguf, n_threads=a.threads, n_threads_batch=a.threads,
                    n_ctx=(len(ids) if ids else 512) + a.new_tokens + 16, n_batch=512, verbose=False)
        if ids is None:
            ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        n_vocab = llm.n_vocab()

        def pick():  # greedy: argmax of the last position's logits (EOS is just another token here)
            p = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
            return int(np.ctypeslib.as_array(p, shape=(n_vocab,)).argmax())

        def run():
            llm.reset()  # n_past = 0; eval() then drops the old KV cache entries
            t0 = time.perf_counter()
            llm.eval(ids)
            out = [pick()]
            t1 = time.perf_counter()
            for _ in range(a.new_tokens - 1):
                llm.eval([out[-1]])
                out.append(pick())
            return t1 - t0, time.perf_counter() - t0, out

        _, _, out = run()  # warm-up
        res = summarize([run()[:2] for _ in range(a.repeats)], a.new_tokens)
        try:
            weights = gguf_weight_types(a.gguf)
        except Exception as e:
            weights = f"unknown ({type(e).__name__}: {e})"
        res.update(adapters_active=0, mode="low-level eval + argmax loop, greedy, EOS ignored",
                   weight_storage=weights, prompt_tokens=len(ids), new_tokens=len(out),
                   text=llm.detokenize(out).decode("utf-8", "replace"),
                   versions={"llama_cpp_python": llama_cpp.__version__,
                             "system_info": llama_cpp.llama_print_system_info().decode().strip()})
        del llm
        return res
    except Exception as e:
        return err(e)


# ------------------------------------------------------- transformers + PEFT
def hf_versions():
    from importlib.metadata import version
    v = {"python": platform.python_version()}
    for m in ("torch", "transformers", "peft", "gguf"):
        try:
            v[m] = version(m)
        except Exception:
            v[m] = None
    try:
        import torch
        v["torch"] = torch.__version__  # keeps the build tag (+cpu / +cuXXX)
    except Exception:
        pass
    return v


def bench_hf_model(model, tok_ids, a):
    import torch
    inp = torch.tensor([tok_ids])
    kw = dict(attention_mask=torch.ones_like(inp), do_sample=False, pad_token_id=0,
              temperature=None, top_p=None, top_k=None)

    def gen(n):  # min_new_tokens=n masks EOS, so exactly n tokens come out
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(inp, min_new_tokens=n, max_new_tokens=n, **kw)
        return time.perf_counter() - t0, out[0, inp.shape[1]:].tolist()

    gen(1), gen(a.new_tokens)  # warm-up
    runs = []
    for _ in range(a.repeats):
        prefill, _ = gen(1)  # time to first token
        total, out = gen(a.new_tokens)
        assert len(out) == a.new_tokens, f"made {len(out)} tokens, wanted {a.new_tokens}"
        runs.append((prefill, total))
    res = summarize(runs, a.new_tokens)
    res["new_tokens"], res["out_ids"] = len(out), out
    return res


def bench_transformers(a, ids):
    """Returns {peer_name: result}. The base model is measured before PEFT wraps it."""
    names = ["transformers_base", "transformers_peft"] + (["transformers_peft_multi"] if a.peft_mode == "both" else [])
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        if ids is None:
            raise RuntimeError("no prompt ids (tokenizer failed)")
        torch.set_num_threads(a.threads)
        try:
            from transformers.utils import logging as hf_logging
            hf_logging.disable_progress_bar()
        except Exception:
            pass
        d, f = os.path.split(os.path.abspath(a.gguf))
        try:
            model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
        except TypeError:  # transformers < 4.56 spells it torch_dtype
            model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
        model.eval()
        tok = AutoTokenizer.from_pretrained(a.tokenizer_dir)
    except Exception as e:
        return {n: err(e) for n in names}
    common = {"adapters_active": 0, "prompt_tokens": len(ids), "versions": hf_versions(),
              "torch_threads": torch.get_num_threads(),
              "weight_storage": "float32 (GGUF dequantized by transformers at load)"}

    def finish(res):
        res.update(common)
        res["text"] = tok.decode(res.pop("out_ids"), skip_special_tokens=False)
        return res

    results = {}
    try:
        results["transformers_base"] = finish(dict(bench_hf_model(model, ids, a), mode="no adapters"))
    except Exception as e:
        results["transformers_base"] = err(e)
    if not a.adapters:
        return {**results, **{n: {"error": "no --adapter given"} for n in names[1:]}}
    try:
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer
        an = list(a.adapters)
        pm = PeftModel.from_pretrained(model, a.adapters[an[0]], adapter_name=an[0])
        for n in an[1:]:
            pm.load_adapter(a.adapters[n], adapter_name=n)
        pm.eval()
        k = len(an)
        modes = ["cat", "multi"] if a.peft_mode == "both" else [a.peft_mode]
        for mode, key in zip(modes, names[1:]):
            try:
                if mode == "cat":
                    # one adapter whose A/B are the K adapters stacked (rank sum r_i), weights 1/K:
                    # delta = sum_i (1/K) * s_i * B_i A_i, computed in one pass per layer
                    pm.add_weighted_adapter(an, [1.0 / k] * k, adapter_name="peers_mix", combination_type="cat")
                    pm.set_adapter("peers_mix")
                    desc = f"add_weighted_adapter(combination_type='cat', weights=1/{k}) -> one adapter, set_adapter"
                else:
                    # K adapters active side by side, each its own LoRA pass per layer, scale s_i/K
                    pm.base_model.set_adapter(an)
                    for m in pm.modules():
                        if isinstance(m, LoraLayer):
                            for n in an:
                                m.set_scale(n, 1.0 / k)
                    desc = f"base_model.set_adapter([{k} adapters]), each scaled 1/{k}"
                results[key] = finish(dict(bench_hf_model(pm, ids, a), mode=desc, adapters=an))
                results[key]["adapters_active"] = k
            except Exception as e:
                results[key] = err(e)
    except Exception as e:
        results.update({n: err(e) for n in names[1:] if n not in results})
    return results


def main():
    a = parse_args()
    try:
        text, ids = (a.prompt, a.prompt_ids) if a.prompt_ids else prompt_text_and_ids(a)
    except Exception as e:
        print(f"tokenizer failed: {e}", file=sys.stderr)
        text, ids = a.prompt, None
    # Other load on the machine ruins these figures (llama.cpp's spinning thread barriers most of
    # all: with T = all cores and one core busy, decode drops by 100x), so record it.
    load_at_start = os.getloadavg()[0]
    peers = {}
    # llama.cpp first: torch's OpenMP threads keep spinning a while after their work, which
    # would steal the (few) cores from llama.cpp if it ran second in the same process.
    if a.only in (None, "llamacpp"):
        print("[peers] llama.cpp ...", file=sys.stderr, flush=True)
        peers["llama_cpp"] = bench_llamacpp(a, text, ids)
    if a.only in (None, "transformers"):
        print("[peers] transformers (+PEFT) ...", file=sys.stderr, flush=True)
        peers.update(bench_transformers(a, ids))
    n_prompt = len(ids) if ids is not None else peers.get("llama_cpp", {}).get("prompt_tokens")
    report = {"prompt_tokens": n_prompt, "new_tokens": a.new_tokens, "threads": a.threads,
              "repeats": a.repeats, "chat": a.chat,
              "loadavg_1min": {"start": round(load_at_start, 2), "end": round(os.getloadavg()[0], 2)}, "prompt": a.prompt, "peers": peers}
    with open(a.json, "w") as f:
        json.dump(report, f, indent=2)
    for name, r in peers.items():
        print(f"{name:24s} " + (f"ERROR {r['error']}" if "error" in r else
              f"decode {r['decode_tokens_per_s']:8.2f} tok/s  prefill {r['prefill_secs'] * 1e3:8.2f} ms"))
    return 0 if any("error" not in r for r in peers.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
