#!/usr/bin/env python3
"""Loads adapter folders written by LoRA Studio's savePeftAdapter into
transformers + PEFT and checks PEFT's logits against the logits LoRA Studio's
engine recorded for the same base model and adapter.

Input: the folder scripts/golden/peft_roundtrip.ts wrote (cases.json and, per
case, model/ and adapter/). Output: tests/golden/peft/roundtrip.json with, per
case, the SHA-256 of the adapter files PEFT loaded, the modules PEFT adapted
and their scaling, PEFT's logits, the largest difference from the engine's
logits, the tolerance and whether the check passed; plus the library versions.
Exits 1 when any case fails. See scripts/golden/README.md.

Usage: python scripts/golden/check_peft_roundtrip.py DIR [--out FILE]
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import peft
import safetensors
import torch
import transformers
from peft import PeftModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_model_golden import REPO_ROOT, flat, load_fp32, to_json  # noqa: E402

DEFAULT_OUT = os.path.join(REPO_ROOT, "tests", "golden", "peft", "roundtrip.json")
ATOL = 2e-4  # the engine's bf16 base holds the exact stored weights; both sides compute in fp32
RTOL = 2e-4


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_case(root, case):
    case_dir = os.path.join(root, case["name"])
    model_dir = os.path.join(case_dir, case["model"])
    adapter_dir = os.path.join(case_dir, case["adapter"])
    files = {name: sha256(os.path.join(adapter_dir, name)) for name in sorted(case["sha256"])}
    assert files == case["sha256"], (files, case["sha256"])

    ids = torch.tensor(case["input_ids"]).reshape(case["batch"], case["seq"])
    model = PeftModel.from_pretrained(load_fp32(model_dir), adapter_dir)
    model.eval()
    lora_layers = {n: m for n, m in model.base_model.model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A}
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        base_logits = load_fp32(model_dir)(input_ids=ids).logits
    ours = torch.tensor(case["engine_logits"]).reshape(logits.shape)
    diff = (ours - logits).abs()
    bound = ATOL + RTOL * logits.abs()
    passed = bool((diff <= bound).all())
    effect = (logits - base_logits).abs().max().item()
    print(f"{case['name']}: {len(lora_layers)} modules, max |engine - PEFT| {diff.max().item():.3g}, "
          f"max |adapter - base| {effect:.3g}: {'passed' if passed else 'FAILED'}")
    return {
        "files": files,
        "peft_config": {k: v for k, v in json.load(open(os.path.join(adapter_dir, "adapter_config.json"))).items()
                        if k in ("r", "lora_alpha", "use_rslora", "target_modules", "layers_to_transform")},
        "targeted_modules": sorted(lora_layers),
        "scaling": {n: float(m.scaling["default"]) for n, m in sorted(lora_layers.items())},
        "input_ids": case["input_ids"],
        "logits_shape": list(logits.shape),
        "peft_logits": flat(logits),
        "adapter_effect_max_abs": effect,
        "max_abs_diff": diff.max().item(),
        "tolerance": {"atol": ATOL, "rtol": RTOL},
        "passed": passed,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    cases = json.load(open(os.path.join(args.dir, "cases.json")))["cases"]
    results = {c["name"]: check_case(args.dir, c) for c in cases}
    out = {
        "description": "Adapters written by LoRA Studio's savePeftAdapter (scripts/golden/peft_roundtrip.ts), loaded "
                       "with transformers + PEFT by scripts/golden/check_peft_roundtrip.py; PEFT's logits compared "
                       "with the engine's (fp32 math on the same bf16 base weights).",
        "versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
                     "peft": peft.__version__, "safetensors": safetensors.__version__, "numpy": np.__version__},
        "passed": all(r["passed"] for r in results.values()),
        "cases": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(to_json(out) + "\n")
    return 0 if out["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
