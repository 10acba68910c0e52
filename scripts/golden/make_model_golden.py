#!/usr/bin/env python3
"""Generate golden reference fixtures for the model loader, forward pass, loss
and LoRA gradients, using the real Hugging Face stack (torch, transformers,
peft).

For every case a tiny random-weight model is built from a config (nothing is
downloaded), saved in the Hugging Face layout with BF16 weights, loaded back in
fp32 with eager attention, and evaluated on fixed inputs. The results go to
tests/golden/models/<case>/golden.json next to the model and PEFT adapter
folders. See scripts/golden/README.md for how to run this and what the files
contain. The C++/TypeScript tests only read the generated files; they never
need Python.

Usage: python scripts/golden/make_model_golden.py [--out DIR] [--case NAME ...]
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import safetensors
import torch
import transformers
import peft
from safetensors.numpy import load_file as load_np
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
    Qwen3Config,
)
from peft import LoraConfig, get_peft_model

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO_ROOT, "tests", "golden", "models")

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SEQ = 11
BATCH = 2
KV_PREFIX = 7
MAX_CASE_BYTES = 400 * 1024

COMMON = dict(
    hidden_size=64,
    intermediate_size=160,
    num_hidden_layers=2,
    vocab_size=96,
    max_position_embeddings=256,
    bos_token_id=1,
    eos_token_id=2,
    hidden_act="silu",
    attention_dropout=0.0,
)

LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}


def case_specs():
    """name -> (config class, kwargs, description, seed, extra flags)."""
    return {
        "llama_gqa": dict(
            cls=LlamaConfig,
            seed=1001,
            kw=dict(
                COMMON,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=16,
                rms_norm_eps=1e-5,
                tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            ),
            rslora=True,
            exercises=[
                "Llama architecture",
                "grouped-query attention (4 query heads, 2 KV heads)",
                "default RoPE, theta 10000",
                "untied lm_head",
                "rsLoRA scaling alpha/sqrt(r) (adapter_rslora, r=8, alpha=16)",
            ],
        ),
        "llama3_tied": dict(
            cls=LlamaConfig,
            seed=1002,
            kw=dict(
                COMMON,
                num_attention_heads=4,
                num_key_value_heads=1,
                head_dim=16,
                rms_norm_eps=1e-5,
                tie_word_embeddings=True,
                rope_parameters=dict(LLAMA3_SCALING, rope_theta=500000.0),
            ),
            exercises=[
                "Llama architecture",
                "llama3 RoPE frequency scaling (factor 8, low 1, high 4, original length 64), theta 500000",
                "multi-query attention (4 query heads, 1 KV head)",
                "tied embeddings (no lm_head.weight in the checkpoint)",
            ],
        ),
        "mistral": dict(
            cls=MistralConfig,
            seed=1003,
            kw=dict(
                COMMON,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=16,
                rms_norm_eps=1e-5,
                tie_word_embeddings=False,
                sliding_window=None,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            ),
            exercises=[
                "Mistral architecture (model_type mistral, same tensor layout as Llama)",
                "grouped-query attention (4/2)",
                "RoPE theta 1e6",
                "sliding_window null (full causal attention)",
                "untied lm_head",
            ],
        ),
        "qwen2": dict(
            cls=Qwen2Config,
            seed=1004,
            kw=dict(
                COMMON,
                num_attention_heads=4,
                num_key_value_heads=2,
                rms_norm_eps=1e-6,
                tie_word_embeddings=True,
                use_sliding_window=False,
                sliding_window=None,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            ),
            exercises=[
                "Qwen2 architecture",
                "q/k/v projection biases (nonzero), no o_proj bias",
                "grouped-query attention (4/2)",
                "tied embeddings",
                "rms_norm_eps 1e-6",
            ],
        ),
        "qwen3": dict(
            cls=Qwen3Config,
            seed=1005,
            kw=dict(
                COMMON,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=32,
                attention_bias=False,
                rms_norm_eps=1e-6,
                tie_word_embeddings=False,
                use_sliding_window=False,
                sliding_window=None,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            ),
            exercises=[
                "Qwen3 architecture",
                "explicit head_dim 32 != hidden/heads (q_proj 64->128, k/v 64->64, o_proj 128->64)",
                "per-head q_norm/k_norm (RMSNorm over head_dim) applied before RoPE",
                "no attention biases",
                "grouped-query attention (4/2)",
                "untied lm_head",
            ],
        ),
        "smol_mha": dict(
            cls=LlamaConfig,
            seed=1006,
            kw=dict(
                COMMON,
                intermediate_size=96,
                num_hidden_layers=3,
                num_attention_heads=4,
                num_key_value_heads=4,
                head_dim=16,
                rms_norm_eps=1e-5,
                tie_word_embeddings=True,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            ),
            exercises=[
                "SmolLM-style Llama",
                "plain multi-head attention (4 query heads = 4 KV heads)",
                "3 layers, intermediate 96",
                "tied embeddings",
            ],
        ),
    }


# ---------------------------------------------------------------------------
# compact JSON with 7 significant digits


def fmt_float(v):
    """7 significant digits, in whichever of the fixed/exponent forms is
    shorter (both are plain JSON numbers)."""
    v = float(v)
    if not math.isfinite(v):
        raise ValueError("non-finite value in golden data")
    if v == 0.0:
        return "0"
    fixed = "%.7g" % v
    if "e" in fixed:
        fixed = None
    mant, exp = ("%.6e" % v).split("e")
    if "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    e = int(exp)
    sci = mant + ("e%d" % e if e != 0 else "")
    if fixed is None or len(sci) < len(fixed):
        return sci
    return fixed


def to_json(obj, indent=0):
    pad = "  " * indent
    pad1 = "  " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [pad1 + json.dumps(str(k)) + ": " + to_json(v, indent + 1) for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in obj):
            return "[" + ",".join(str(x) if isinstance(x, int) else fmt_float(x) for x in obj) + "]"
        return "[" + ",".join(to_json(x, indent + 1) for x in obj) + "]"
    if isinstance(obj, float):
        return fmt_float(obj)
    return json.dumps(obj)


def flat(t):
    return [float(x) for x in t.detach().to(torch.float32).reshape(-1).cpu().numpy().tolist()]


# ---------------------------------------------------------------------------


def init_weights(model, seed):
    """Non-trivial random init: projections normal(0, 0.1), embeddings
    normal(0, 0.25), lm_head normal(0, 0.2), norm weights 1 + normal(0, 0.1),
    biases normal(0, 0.1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            shape = p.shape
            if "norm" in name:
                v = 1.0 + 0.1 * torch.randn(shape, generator=g)
            elif name.endswith(".bias"):
                v = 0.1 * torch.randn(shape, generator=g)
            elif "embed_tokens" in name:
                v = 0.25 * torch.randn(shape, generator=g)
            elif name.startswith("lm_head"):
                v = 0.2 * torch.randn(shape, generator=g)
            else:
                v = 0.1 * torch.randn(shape, generator=g)
            p.copy_(v)


def make_inputs(seed, vocab):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab, (BATCH, SEQ), generator=g)
    labels = input_ids.clone()
    labels[0, 0] = -100
    labels[0, 1] = -100
    labels[0, 6] = -100
    labels[1, 4] = -100
    labels[1, SEQ - 1] = -100
    return input_ids, labels


def head_dim_of(cfg):
    return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


def load_fp32(folder):
    m = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    return m


def lora_keyname(param_name):
    # PEFT parameter names carry the adapter name ("lora_A.default.weight");
    # the saved file strips it ("lora_A.weight").
    return param_name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")


def run_adapter(case_dir, name, lcfg, b_seed, input_ids, labels, save_dir):
    torch.manual_seed(b_seed)  # fixes PEFT's Kaiming-uniform init of lora_A
    base = load_fp32(case_dir)
    pm = get_peft_model(base, lcfg)
    pm.peft_config["default"].base_model_name_or_path = name
    g = torch.Generator().manual_seed(b_seed + 17)
    with torch.no_grad():
        for pname, p in sorted(pm.named_parameters(), key=lambda kv: kv[0]):
            if ".lora_B." in pname:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    pm.eval()  # dropout is 0 anyway; eval keeps everything deterministic
    for pname, p in pm.named_parameters():
        p.requires_grad_(".lora_" in pname)
    out = pm(input_ids=input_ids, labels=labels)
    out.loss.backward()
    grads = {}
    for pname, p in sorted(pm.named_parameters(), key=lambda kv: kv[0]):
        if ".lora_" in pname:
            grads[lora_keyname(pname)] = {"shape": list(p.shape), "values": flat(p.grad)}
    if os.path.exists(save_dir):
        shutil.rmtree(save_dir)
    # save_embedding_layers=False: no embedding is adapted, and "auto" would try
    # to look the base model up on the hub.
    pm.save_pretrained(save_dir, save_embedding_layers=False)
    # PEFT writes a model-card template next to the adapter; it carries no data.
    readme = os.path.join(save_dir, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    # PEFT stores target_modules as a set, so the saved list order depends on
    # string hashing; sort it so regenerating gives byte-identical files.
    cfg_path = os.path.join(save_dir, "adapter_config.json")
    acfg = json.load(open(cfg_path))
    if isinstance(acfg.get("target_modules"), list):
        acfg["target_modules"] = sorted(acfg["target_modules"])
    with open(cfg_path, "w") as f:
        json.dump(acfg, f, indent=2, sort_keys=True)
        f.write("\n")
    # adapter_model.safetensors must hold exactly the keys we report grads for
    saved = load_np(os.path.join(save_dir, "adapter_model.safetensors"))
    assert sorted(saved.keys()) == sorted(grads.keys()), (sorted(saved.keys())[:4], sorted(grads.keys())[:4])
    for k, arr in saved.items():
        assert arr.dtype == np.float32, (k, arr.dtype)
    acfg = json.load(open(os.path.join(save_dir, "adapter_config.json")))
    assert acfg["base_model_name_or_path"] == name, acfg["base_model_name_or_path"]
    # the adapter must round-trip through PEFT's loader
    from peft import PeftModel

    re_base = load_fp32(case_dir)
    re = PeftModel.from_pretrained(re_base, save_dir)
    re.eval()
    with torch.no_grad():
        re_logits = re(input_ids=input_ids).logits
    d = (re_logits - out.logits.detach()).abs().max().item()
    assert d == 0.0, f"adapter reload changed logits by {d}"
    return out, grads, sorted(saved.keys()), acfg


def legacy_config(cfg_dict):
    """The same config in the pre-transformers-5 layout used by most hub
    checkpoints: top-level rope_theta, rope_scaling, torch_dtype."""
    d = dict(cfg_dict)
    rp = dict(d.pop("rope_parameters"))
    d["rope_theta"] = rp.pop("rope_theta")
    if rp.get("rope_type", "default") != "default":
        d["rope_scaling"] = rp
    else:
        d["rope_scaling"] = None
    if "dtype" in d:
        d["torch_dtype"] = d.pop("dtype")
    d.pop("transformers_version", None)
    return d


def generate_case(name, spec, out_root):
    print(f"\n===== {name} =====")
    case_dir = os.path.join(out_root, name)
    os.makedirs(case_dir, exist_ok=True)
    for stale in ("adapter", "adapter_rslora"):
        if os.path.exists(os.path.join(case_dir, stale)):
            shutil.rmtree(os.path.join(case_dir, stale))

    torch.manual_seed(spec["seed"])
    cfg = spec["cls"](**spec["kw"])
    cfg.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="eager")
    init_weights(model, spec["seed"])
    tied = bool(cfg.tie_word_embeddings)
    if tied:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model = model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(case_dir)
    for extra in ("generation_config.json",):
        p = os.path.join(case_dir, extra)
        if os.path.exists(p):
            os.remove(p)
    bf16_state = {k: v.clone() for k, v in model.state_dict().items()}
    del model

    # --- checkpoint checks ---------------------------------------------------
    cfg_json = json.load(open(os.path.join(case_dir, "config.json")))
    print("config.json dtype:", cfg_json.get("dtype"), cfg_json.get("torch_dtype"))
    print("rope_parameters:", cfg_json.get("rope_parameters"))
    assert cfg_json.get("dtype", cfg_json.get("torch_dtype")) == "bfloat16"
    with safetensors.safe_open(os.path.join(case_dir, "model.safetensors"), "pt") as f:
        keys = sorted(f.keys())
        dtypes = {f.get_slice(k).get_dtype() for k in keys}
    print("checkpoint dtypes:", dtypes, "tensors:", len(keys))
    print("checkpoint keys:", [k for k in keys if ".layers.1." not in k and ".layers.2." not in k])
    assert dtypes == {"BF16"}, dtypes
    assert "model.embed_tokens.weight" in keys and "model.norm.weight" in keys
    assert "model.layers.0.self_attn.q_proj.weight" in keys
    assert ("lm_head.weight" in keys) == (not tied), ("lm_head presence", tied)

    # legacy (transformers 4 / hub) config layout, verified to load identically
    legacy = legacy_config(cfg_json)
    tmp = tempfile.mkdtemp()
    try:
        json.dump(legacy, open(os.path.join(tmp, "config.json"), "w"))
        lc = AutoConfig.from_pretrained(tmp)
        assert lc.rope_parameters == cfg.rope_parameters, (lc.rope_parameters, cfg.rope_parameters)
        assert head_dim_of(lc) == head_dim_of(cfg) and lc.dtype == torch.bfloat16
        assert lc.tie_word_embeddings == cfg.tie_word_embeddings
    finally:
        shutil.rmtree(tmp)
    with open(os.path.join(case_dir, "config_legacy.json"), "w") as f:
        json.dump(legacy, f, indent=2, sort_keys=True)
        f.write("\n")

    # --- reload in fp32 --------------------------------------------------------
    model = load_fp32(case_dir)
    for k, v in model.state_dict().items():
        if k in bf16_state:
            assert v.dtype == torch.float32
            assert torch.equal(v, bf16_state[k].to(torch.float32)), k
    if tied:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)

    rot = model.model.rotary_emb
    inv = rot.inv_freq.clone()
    hd = head_dim_of(cfg)
    theta = cfg.rope_parameters["rope_theta"]
    plain = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float) / hd))
    print("head_dim", hd, "attention_scaling", rot.attention_scaling)
    print("inv_freq        :", [float("%.6g" % x) for x in inv.tolist()])
    if name == "llama3_tied":
        print("inv_freq(no scl):", [float("%.6g" % x) for x in plain.tolist()])
        changed = (inv != plain).nonzero().flatten().tolist()
        print("llama3 scaling changes inv_freq indices:", changed)
        rp = cfg.rope_parameters
        orig = rp["original_max_position_embeddings"]
        for i, f0 in enumerate(plain.tolist()):
            wl = 2 * math.pi / f0
            regime = ("kept" if wl < orig / rp["high_freq_factor"] else
                      "divided by factor" if wl > orig / rp["low_freq_factor"] else "smoothed")
            print(f"  inv_freq[{i}] wavelen {wl:.4g}: {regime} -> {inv[i].item():.6g}")
        assert 0 < len(changed) < len(plain), "llama3 scaling must change some but not all frequencies"
    else:
        assert torch.allclose(inv, plain, rtol=0, atol=0), "default RoPE inv_freq mismatch"

    input_ids, labels = make_inputs(spec["seed"] + 7, cfg.vocab_size)
    shift = torch.nn.functional.pad(labels, (0, 1), value=-100)[:, 1:]
    trained = int((shift != -100).sum().item())

    with torch.no_grad():
        base = model(input_ids=input_ids, labels=labels)
    base_logits = base.logits.float()
    ref_loss = torch.nn.functional.cross_entropy(
        base_logits.reshape(-1, cfg.vocab_size), shift.reshape(-1), ignore_index=-100
    )
    assert torch.allclose(ref_loss, base.loss, rtol=1e-6, atol=0), (ref_loss, base.loss)
    print("base loss", base.loss.item(), "trained tokens", trained, "max|logit|", base_logits.abs().max().item(),
          "logit std", base_logits.std().item())

    # --- KV cache -----------------------------------------------------------------
    with torch.no_grad():
        pre = model(input_ids=input_ids[:, :KV_PREFIX], use_cache=True)
        cache = getattr(pre, "cache", None)
        if cache is None:
            cache = pre.past_key_values
        prefill_last = pre.logits[:, -1, :].float()
        steps = []
        for t in range(KV_PREFIX, SEQ):
            o = model(input_ids=input_ids[:, t : t + 1], cache=cache, use_cache=True)
            cache = getattr(o, "cache", None) or o.past_key_values
            steps.append(o.logits[:, -1, :].float())
        steps = torch.stack(steps, 0)  # [steps, batch, V]
    kv_diff = max(
        (prefill_last - base_logits[:, KV_PREFIX - 1]).abs().max().item(),
        (steps - base_logits[:, KV_PREFIX:].transpose(0, 1)).abs().max().item(),
    )
    print("kv-cache vs full-sequence max |diff|:", kv_diff)
    assert kv_diff < 1e-4

    # --- LoRA adapter -------------------------------------------------------------
    lcfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=list(TARGETS), bias="none",
                      task_type="CAUSAL_LM")
    ad_out, ad_grads, ad_keys, ad_cfg = run_adapter(
        case_dir, name, lcfg, spec["seed"] + 100, input_ids, labels, os.path.join(case_dir, "adapter"))
    print("adapter keys (first 4 of %d):" % len(ad_keys), ad_keys[:4])
    print("adapter_config:", {k: ad_cfg[k] for k in ("r", "lora_alpha", "use_rslora", "target_modules",
                                                   "base_model_name_or_path")})
    ad_logits = ad_out.logits.detach().float()
    ad_delta = (ad_logits - base_logits).abs().max().item()
    print("adapter loss", ad_out.loss.item(), "max |adapter - base logits|", ad_delta)
    assert ad_delta > 1e-2, "adapter must visibly change the logits"

    golden = {
        "case": name,
        "input_ids": input_ids.tolist(),
        "labels": labels.tolist(),
        "base": {
            "logits_shape": [BATCH, SEQ, cfg.vocab_size],
            "logits": flat(base_logits),
            "loss": float(base.loss.item()),
            "trained_tokens": trained,
        },
        "kv_cache": {
            "prefix_len": KV_PREFIX,
            "prefill_last_logits_shape": [BATCH, cfg.vocab_size],
            "prefill_last_logits": flat(prefill_last),
            "step_positions": list(range(KV_PREFIX, SEQ)),
            "step_logits_shape": [SEQ - KV_PREFIX, BATCH, cfg.vocab_size],
            "step_logits": flat(steps),
        },
        "adapter": {
            "dir": "adapter",
            "r": 4,
            "lora_alpha": 8,
            "use_rslora": False,
            "scale": 8 / 4,
            "logits": flat(ad_logits),
            "loss": float(ad_out.loss.item()),
            "grads": ad_grads,
        },
    }

    if spec.get("rslora"):
        rcfg = LoraConfig(r=8, lora_alpha=16, use_rslora=True, lora_dropout=0.0, target_modules=list(TARGETS),
                          bias="none", task_type="CAUSAL_LM")
        rs_out, rs_grads, rs_keys, rs_cfg = run_adapter(
            case_dir, name, rcfg, spec["seed"] + 200, input_ids, labels, os.path.join(case_dir, "adapter_rslora"))
        assert rs_cfg["use_rslora"] is True
        rs_logits = rs_out.logits.detach().float()
        print("rslora loss", rs_out.loss.item(), "max |rslora - base logits|",
              (rs_logits - base_logits).abs().max().item())
        golden["adapter_rslora"] = {
            "dir": "adapter_rslora",
            "r": 8,
            "lora_alpha": 16,
            "use_rslora": True,
            "scale": 16 / math.sqrt(8),
            "logits": flat(rs_logits),
            "loss": float(rs_out.loss.item()),
        }

    golden["versions"] = {
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "safetensors": safetensors.__version__,
    }
    path = os.path.join(case_dir, "golden.json")
    with open(path, "w") as f:
        f.write(to_json(golden))
        f.write("\n")

    sanity_check(case_dir, cfg.vocab_size)

    total = 0
    for root, _, files in os.walk(case_dir):
        for fn in files:
            total += os.path.getsize(os.path.join(root, fn))
    print(f"{name}: folder size {total} bytes")
    if total >= MAX_CASE_BYTES:
        print(f"WARNING: {name} folder is {total} bytes (limit {MAX_CASE_BYTES})")
    return {"name": name, "model_type": cfg.model_type, "exercises": spec["exercises"],
            "has_rslora": bool(spec.get("rslora")), "tied": tied, "head_dim": hd,
            "num_attention_heads": cfg.num_attention_heads, "num_key_value_heads": cfg.num_key_value_heads,
            "num_hidden_layers": cfg.num_hidden_layers, "intermediate_size": cfg.intermediate_size}


# ---------------------------------------------------------------------------
# Independent numpy re-implementation (float64) used only to check that the
# fixtures mean what the README says they mean: it reads config.json and the
# raw safetensors bytes the way a from-scratch loader would.


def read_safetensors_raw(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, info in header.items():
        if k == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = data[a:b]
        if info["dtype"] == "BF16":
            u = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        elif info["dtype"] == "F32":
            arr = np.frombuffer(buf, dtype="<f4")
        else:
            raise ValueError(info["dtype"])
        out[k] = arr.reshape(info["shape"]).astype(np.float64)
    return out


def np_inv_freq(cfg):
    rp = cfg["rope_parameters"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    inv = 1.0 / (rp["rope_theta"] ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    if rp.get("rope_type", "default") == "llama3":
        f, lo, hi, orig = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"], \
            rp["original_max_position_embeddings"]
        out = []
        for x in inv:
            wl = 2 * math.pi / x
            if wl < orig / hi:
                out.append(x)
            elif wl > orig / lo:
                out.append(x / f)
            else:
                sm = (orig / wl - lo) / (hi - lo)
                out.append((1 - sm) * x / f + sm * x)
        inv = np.array(out)
    else:
        assert rp.get("rope_type", "default") == "default"
    return inv


def np_forward(case_dir, input_ids, adapter_dir=None, perturb=None):
    cfg = json.load(open(os.path.join(case_dir, "config.json")))
    W = read_safetensors_raw(os.path.join(case_dir, "model.safetensors"))
    lora = {}
    if adapter_dir is not None:
        acfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
        r, alpha = acfg["r"], acfg["lora_alpha"]
        scale = alpha / math.sqrt(r) if acfg.get("use_rslora") else alpha / r
        A = read_safetensors_raw(os.path.join(adapter_dir, "adapter_model.safetensors"))
        if perturb is not None:  # (key, flat index, delta) for finite differences
            pk, pi, pd = perturb
            A[pk] = A[pk].copy()
            A[pk].reshape(-1)[pi] += pd
        for k in A:
            if ".lora_A.weight" in k:
                mod = k[len("base_model.model."):-len(".lora_A.weight")]
                lora[mod] = (A[k], A[k.replace(".lora_A.", ".lora_B.")], scale)
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    eps = cfg["rms_norm_eps"]
    ids = np.asarray(input_ids)
    B, T = ids.shape

    def lin(x, name):
        y = x @ W[name + ".weight"].T
        if name + ".bias" in W:
            y = y + W[name + ".bias"]
        if name in lora:
            a, b, s = lora[name]
            y = y + s * ((x @ a.T) @ b.T)
        return y

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    inv = np_inv_freq(cfg)
    ang = np.arange(T)[:, None] * inv[None, :]
    ang = np.concatenate([ang, ang], -1)  # [T, hd]: rotate_half layout
    cos, sin = np.cos(ang), np.sin(ang)

    def rope(x):  # [B, heads, T, hd]
        h = hd // 2
        rot = np.concatenate([-x[..., h:], x[..., :h]], -1)
        return x * cos + rot * sin

    x = W["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        hn = rms(x, W[p + "input_layernorm.weight"])
        q = lin(hn, p + "self_attn.q_proj").reshape(B, T, nh, hd)
        k = lin(hn, p + "self_attn.k_proj").reshape(B, T, nkv, hd)
        v = lin(hn, p + "self_attn.v_proj").reshape(B, T, nkv, hd)
        if p + "self_attn.q_norm.weight" in W:  # Qwen3: per-head RMSNorm before RoPE
            q = rms(q, W[p + "self_attn.q_norm.weight"])
            k = rms(k, W[p + "self_attn.k_norm.weight"])
        q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
        q, k = rope(q), rope(k)
        rep = nh // nkv
        k = np.repeat(k, rep, axis=1)  # query head j uses KV head j // rep
        v = np.repeat(v, rep, axis=1)
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        o = (s @ v).transpose(0, 2, 1, 3).reshape(B, T, nh * hd)
        x = x + lin(o, p + "self_attn.o_proj")
        hn = rms(x, W[p + "post_attention_layernorm.weight"])
        g = lin(hn, p + "mlp.gate_proj")
        u = lin(hn, p + "mlp.up_proj")
        x = x + lin(g / (1 + np.exp(-g)) * u, p + "mlp.down_proj")
    x = rms(x, W["model.norm.weight"])
    head = W["lm_head.weight"] if "lm_head.weight" in W else W["model.embed_tokens.weight"]
    assert ("lm_head.weight" not in W) == bool(cfg.get("tie_word_embeddings"))
    return x @ head.T


def np_loss(logits, labels, vocab):
    logits = np.asarray(logits, dtype=np.float64).reshape(BATCH, SEQ, vocab)
    labels = np.asarray(labels)
    tot, n = 0.0, 0
    for b in range(BATCH):
        for t in range(SEQ - 1):
            y = labels[b, t + 1]
            if y == -100:
                continue
            row = logits[b, t]
            m = row.max()
            lse = m + math.log(np.exp(row - m).sum())
            tot += lse - row[y]
            n += 1
    return tot / n, n


def sanity_check(case_dir, vocab):
    g = json.load(open(os.path.join(case_dir, "golden.json")))
    for sec in ("base", "adapter", "adapter_rslora"):
        if sec not in g:
            continue
        loss, n = np_loss(g[sec]["logits"], g["labels"], vocab)
        rec = g[sec]["loss"]
        print(f"  sanity {sec}: numpy loss {loss:.7g} recorded {rec:.7g} (rel diff {abs(loss - rec) / rec:.2e}),"
              f" trained {n}, max|logit| {max(abs(x) for x in g[sec]['logits']):.4g}")
        assert abs(loss - rec) <= 2e-6 * abs(rec), (sec, loss, rec)
        assert n == g["base"]["trained_tokens"]
    diff = max(abs(a - b) for a, b in zip(g["base"]["logits"], g["adapter"]["logits"]))
    assert diff > 1e-2
    # independent float64 numpy forward from the files on disk
    for sec, ad in (("base", None), ("adapter", "adapter"), ("adapter_rslora", "adapter_rslora")):
        if sec not in g:
            continue
        ref = np_forward(case_dir, g["input_ids"], os.path.join(case_dir, ad) if ad else None)
        got = np.asarray(g[sec]["logits"]).reshape(ref.shape)
        err = np.abs(ref - got).max()
        print(f"  numpy reference forward vs {sec} logits: max |diff| {err:.3g}")
        assert err < 1e-4, (sec, err)
    # finite-difference check of a few recorded LoRA gradients (float64)
    rng = np.random.default_rng(0)
    keys = sorted(g["adapter"]["grads"])
    V = vocab
    worst = 0.0
    for k in [keys[i] for i in rng.choice(len(keys), 4, replace=False)]:
        gv = g["adapter"]["grads"][k]["values"]
        i = int(np.argmax(np.abs(gv)))
        h = 1e-3
        lp, _ = np_loss(np_forward(case_dir, g["input_ids"], os.path.join(case_dir, "adapter"), (k, i, h)),
                        g["labels"], V)
        lm, _ = np_loss(np_forward(case_dir, g["input_ids"], os.path.join(case_dir, "adapter"), (k, i, -h)),
                        g["labels"], V)
        fd = (lp - lm) / (2 * h)
        rel = abs(fd - gv[i]) / max(abs(gv[i]), 1e-8)
        worst = max(worst, rel)
        assert rel < 1e-3, (k, i, fd, gv[i])
    print(f"  finite-difference check of 4 adapter grads: worst rel err {worst:.2e}")
    # adapter grads: shapes match the saved tensors
    saved = load_np(os.path.join(case_dir, "adapter", "adapter_model.safetensors"))
    for k, v in g["adapter"]["grads"].items():
        assert list(saved[k].shape) == v["shape"] and len(v["values"]) == int(np.prod(v["shape"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--case", action="append")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    specs = case_specs()
    names = args.case or list(specs)
    os.makedirs(args.out, exist_ok=True)
    entries = [generate_case(n, specs[n], args.out) for n in names]
    if not args.case:
        index = {
            "description": "Golden fixtures produced with torch/transformers/peft by scripts/golden/make_model_golden.py. "
                           "Each case folder holds config.json + model.safetensors (BF16, Hugging Face layout), "
                           "config_legacy.json (same config in the pre-transformers-5 hub layout), adapter/ "
                           "(PEFT LoRA r=4 alpha=8 on q,k,v,o,gate,up,down) and golden.json. References were "
                           "computed in fp32 from the exact BF16 weights with eager attention.",
            "versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
                         "peft": peft.__version__},
            "cases": entries,
        }
        with open(os.path.join(args.out, "index.json"), "w") as f:
            json.dump(index, f, indent=2)
            f.write("\n")
    print("\nall cases done")


if __name__ == "__main__":
    sys.exit(main())
