"""The reference LoRA training step for `npm run bench`: Hugging Face
transformers + PEFT on PyTorch (fp32, all cores), on a random-weight model of
the given shape. Prints one JSON object on the last line of stdout.

Usage: python3 scripts/bench_hf.py '<json>' where json has "config" (a
transformers config dict with model_type), "seq", "steps", "warmup", "rank",
"checkpointing".
"""
import json
import os
import resource
import sys
import time


def main() -> None:
    args = json.loads(sys.argv[1])
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    cfg_dict = dict(args["config"])
    model_type = cfg_dict.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **cfg_dict)
    config._attn_implementation = "sdpa"
    t0 = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    build_seconds = time.perf_counter() - t0
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_config = LoraConfig(r=args["rank"], lora_alpha=2 * args["rank"], lora_dropout=0.0,
                             target_modules=targets, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, peft_config)
    if args.get("checkpointing", True):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    seq = args["seq"]
    ids = torch.randint(0, config.vocab_size, (1, seq))

    def step() -> float:
        start = time.perf_counter()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    for _ in range(args.get("warmup", 1)):
        step()
    times = [step() for _ in range(args["steps"])]
    mean = sum(times) / len(times)
    print(json.dumps({
        "stepSeconds": times,
        "tokensPerSecond": (seq - 1) / mean,
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "buildSeconds": build_seconds,
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }))


if __name__ == "__main__":
    main()
