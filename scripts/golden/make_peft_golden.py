#!/usr/bin/env python3
"""PEFT adapters in the less common adapter_config.json forms, with PEFT's own
logits, for tests/unit/adapters-*.test.ts.

Each case builds a PEFT LoRA adapter on one of the committed tiny base models
in tests/golden/models/ (nothing is downloaded), sets lora_B to N(0, 0.05)
(lora_A keeps PEFT's seeded Kaiming-uniform init), saves it with PEFT's
save_pretrained, optionally stores the LoRA tensors in F16/BF16, reloads the
folder with PeftModel.from_pretrained and records:
  - the modules PEFT adapted (targeted_module_names) and each one's rank and
    scaling, so the tests can check LoRA Studio selects the same modules;
  - PEFT's logits for the base model's golden input_ids (fp32, eager).

Output: tests/golden/peft/<case>/{adapter_config.json, adapter_model.safetensors}
and tests/golden/peft/golden.json. See scripts/golden/README.md.

Usage: python scripts/golden/make_peft_golden.py [--out DIR]
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np
import peft
import safetensors
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.numpy import save_file as save_np
from safetensors.torch import load_file as load_pt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_model_golden import REPO_ROOT, flat, load_fp32, to_json  # noqa: E402

MODELS = os.path.join(REPO_ROOT, "tests", "golden", "models")
DEFAULT_OUT = os.path.join(REPO_ROOT, "tests", "golden", "peft")


def case_specs():
    """name -> base model case, LoraConfig kwargs, dtype of the saved LoRA tensors, seed."""
    return {
        # A regular expression over whole module names that picks different
        # projections in different layers; rsLoRA scaling alpha / sqrt(r).
        "regex_rslora": dict(
            base="llama_gqa",
            seed=2001,
            dtype="F32",
            lora=dict(
                r=8,
                lora_alpha=16,
                use_rslora=True,
                target_modules=r"model\.layers\.1\.self_attn\.(q|v)_proj|model\.layers\.0\.mlp\.(gate|down)_proj",
            ),
        ),
        # A list with a bare name and a dotted suffix, minus an excluded
        # projection, on a subset of layers found through layers_pattern;
        # bias "all" on a model without biases (no bias tensors to save); BF16 tensors.
        "layers_bf16": dict(
            base="smol_mha",
            seed=2002,
            dtype="BF16",
            lora=dict(
                r=4,
                lora_alpha=8,
                target_modules=["self_attn.q_proj", "k_proj", "o_proj", "down_proj"],
                exclude_modules=["k_proj"],
                layers_to_transform=[0, 2],
                layers_pattern="layers",
                bias="all",
            ),
        ),
        # "all-linear" (PEFT refuses layers_to_transform with it) minus a
        # regular expression of excluded modules, with one alpha for every
        # module through alpha_pattern, on Qwen3.
        "all_linear_qwen3": dict(
            base="qwen3",
            seed=2004,
            dtype="F32",
            lora=dict(
                r=2,
                lora_alpha=8,
                target_modules="all-linear",
                exclude_modules=r"model\.layers\.1\.mlp\..*",
                alpha_pattern={r".*_proj": 12},
            ),
        ),
        # A list mixing a bare name, a dotted suffix and a full module name
        # (which bypasses layers_to_transform), an integer layers_to_transform,
        # dropout and Gaussian init, on Qwen2 (q/k/v biases stay the base's), F16 tensors.
        "qwen2_names_f16": dict(
            base="qwen2",
            seed=2003,
            dtype="F16",
            lora=dict(
                r=4,
                lora_alpha=4,
                lora_dropout=0.1,
                init_lora_weights="gaussian",
                target_modules=["v_proj", "mlp.up_proj", "model.layers.0.self_attn.o_proj"],
                layers_to_transform=1,
            ),
        ),
    }


def save_case(name, spec, out_root):
    case_dir = os.path.join(out_root, name)
    base_dir = os.path.join(MODELS, spec["base"])
    base_golden = json.load(open(os.path.join(base_dir, "golden.json")))
    input_ids = torch.tensor(base_golden["input_ids"])

    torch.manual_seed(spec["seed"])  # PEFT's init of lora_A
    pm = get_peft_model(load_fp32(base_dir), LoraConfig(task_type="CAUSAL_LM", **spec["lora"]))
    pm.peft_config["default"].base_model_name_or_path = spec["base"]
    g = torch.Generator().manual_seed(spec["seed"] + 17)
    with torch.no_grad():
        for pname, p in sorted(pm.named_parameters(), key=lambda kv: kv[0]):
            if ".lora_B." in pname:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    if os.path.exists(case_dir):
        shutil.rmtree(case_dir)
    pm.save_pretrained(case_dir, save_embedding_layers=False)
    os.remove(os.path.join(case_dir, "README.md"))  # PEFT's model-card template
    cfg_path = os.path.join(case_dir, "adapter_config.json")
    acfg = json.load(open(cfg_path))
    if isinstance(acfg.get("target_modules"), list):  # a set inside PEFT: sort for stable files
        acfg["target_modules"] = sorted(acfg["target_modules"])
    with open(cfg_path, "w") as f:
        json.dump(acfg, f, indent=2, sort_keys=True)
        f.write("\n")

    weights = os.path.join(case_dir, "adapter_model.safetensors")
    if spec["dtype"] != "F32":
        tdtype = torch.bfloat16 if spec["dtype"] == "BF16" else torch.float16
        tensors = {k: v.to(tdtype) for k, v in load_pt(weights).items()}
        safetensors.torch.save_file(tensors, weights, metadata={"format": "pt"})
    with safetensors.safe_open(weights, "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes == {spec["dtype"]}, dtypes

    # PEFT's view of the saved folder: what it adapts and what it computes.
    model = PeftModel.from_pretrained(load_fp32(base_dir), case_dir)
    model.eval()
    lora_layers = {n: m for n, m in model.base_model.model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A}
    targeted = sorted(lora_layers)
    assert targeted == sorted(model.targeted_module_names), (targeted, model.targeted_module_names)
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits
        base_logits = load_fp32(base_dir)(input_ids=input_ids).logits
    effect = (logits - base_logits).abs().max().item()
    print(f"{name}: {len(targeted)} modules {targeted}")
    print(f"  max |adapter - base| logit {effect:.4g}")
    assert effect > 1e-2, "the adapter must visibly change the logits"
    return {
        "base": spec["base"],
        "dir": name,
        "dtype": spec["dtype"],
        "targeted_modules": targeted,
        "rank": {n: int(m.r["default"]) for n, m in sorted(lora_layers.items())},
        "scaling": {n: float(m.scaling["default"]) for n, m in sorted(lora_layers.items())},
        "input_ids": base_golden["input_ids"],
        "logits_shape": list(logits.shape),
        "logits": flat(logits),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    cases = {name: save_case(name, spec, args.out) for name, spec in case_specs().items()}
    golden = {
        "description": "PEFT LoRA adapters in less common adapter_config.json forms, made by "
                       "scripts/golden/make_peft_golden.py on the tiny bases in tests/golden/models, with the "
                       "modules PEFT adapted and PEFT's logits (fp32, eager attention).",
        "versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
                     "peft": peft.__version__, "safetensors": safetensors.__version__, "numpy": np.__version__},
        "cases": cases,
    }
    with open(os.path.join(args.out, "golden.json"), "w") as f:
        f.write(to_json(golden) + "\n")
    print("done")


if __name__ == "__main__":
    sys.exit(main())
