#!/usr/bin/env python3
"""The peer of qlora-compat's training step: the same cases trained with transformers + PEFT +
bitsandbytes from PyPI, on the CPU, the way a user's loop (or Trainer on a GPU) runs them.

For every case of a matrix, `qlora-compat export` writes the checkpoint, the batch, the LoRA start
and the settings; this script then
  - loads the checkpoint with LlamaForCausalLM.from_pretrained (eager attention, torch_dtype =
    param_dtype, BitsAndBytesConfig for nf4/fp4/int8 with bnb_4bit_compute_dtype = compute_dtype),
  - prepare_kbit=on: peft.prepare_model_for_kbit_training (gradient checkpointing as the case says),
  - get_peft_model(LoraConfig(r, alpha, dropout, the seven projections),
    autocast_adapter_dtype = adapter_dtype != base); adapter_dtype=model: the adapters cast by hand,
  - lora_A set to the exported start (lora_B starts at 0 in both),
  - grad_checkpointing: model.gradient_checkpointing_enable({"use_reentrant": ...}) (Trainer's
    gradient_checkpointing=True, after get_peft_model),
  - the optimizer (adamw-fp32: bnb.optim.AdamW, adamw-param: torch.optim.AdamW, adamw8bit:
    bnb.optim.AdamW8bit, paged-adamw8bit: bnb.optim.PagedAdamW8bit; lr from the settings, no
    weight decay),
  - warmup + steps training steps: forward under torch.autocast("cpu", dtype) for amp, the loss
    (cross-entropy of logits.float()), backward (scaled by torch.amp.GradScaler("cpu") for
    amp=fp16), scaler.step/update or optimizer.step, zero_grad; the dropout generator seeded with
    the exported seed,
and writes one record per case in qlora-compat's JSON schema (outcome, phase, message, losses);
messages are classified by `qlora-compat classify`, the harness's own table.

Usage: step_peer.py --cli QLORA_COMPAT --matrix M.yaml --out DIR [--filter F] [--work W]
Outside the product's run path: a test tool (ctest label `peer`) and a documented command.
"""
import argparse
import inspect
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PHASES = ("setup", "load", "forward", "backward", "optimizer")


def versions():
    import bitsandbytes
    import peft
    import transformers
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "bitsandbytes": bitsandbytes.__version__}


def classify(cli, message):
    done = subprocess.run([cli, "classify"], input=message, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"qlora-compat classify failed: {done.stderr}")
    return done.stdout.strip()


def load_model(folder, axes):
    from transformers import BitsAndBytesConfig, LlamaForCausalLM
    kwargs = {"dtype": DTYPES[axes["param_dtype"]], "attn_implementation": "eager"}
    weights = axes["weights"]
    if weights in ("nf4", "fp4"):
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=weights,
            bnb_4bit_use_double_quant=axes["double_quant"] == "true",
            bnb_4bit_compute_dtype=DTYPES[axes["compute_dtype"]])
        kwargs["device_map"] = {"": "cpu"}
    elif weights == "int8":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        kwargs["device_map"] = {"": "cpu"}
    return LlamaForCausalLM.from_pretrained(folder, **kwargs)


def adapt(model, folder, case):
    import peft
    axes, settings = case["axes"], case["settings"]
    ckpt = axes["grad_checkpointing"]
    gc_kwargs = {"use_reentrant": ckpt == "reentrant"}
    if axes["prepare_kbit"] == "on":
        model = peft.prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=ckpt != "off", gradient_checkpointing_kwargs=gc_kwargs)
    config = peft.LoraConfig(r=settings["lora_rank"], lora_alpha=settings["lora_alpha"],
                             lora_dropout=settings["lora_dropout"],
                             target_modules=case["target_modules"], bias="none",
                             task_type="CAUSAL_LM")
    # PEFT before 0.12 has no autocast_adapter_dtype: its adapters go where that release puts them
    # (the `stack` axis says which release the case follows).
    switch = {}
    if "autocast_adapter_dtype" in inspect.signature(peft.get_peft_model).parameters:
        switch["autocast_adapter_dtype"] = axes["adapter_dtype"] != "base"
    model = peft.get_peft_model(model, config, **switch)
    starts = load_file(os.path.join(folder, "lora_init.safetensors"))
    dtype = DTYPES[axes["param_dtype"]]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" not in name:
                continue
            if axes["adapter_dtype"] == "model":
                p.data = p.data.to(dtype)  # the recipes' hand cast after get_peft_model
            if "lora_A" in name:
                key = name.replace("base_model.model.", "", 1).replace(".default", "")
                p.copy_(starts[key].to(p.dtype))
            else:
                p.zero_()
    if ckpt != "off":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gc_kwargs)
    model.train()
    return model


def make_optimizer(params, kind, lr):
    import bitsandbytes as bnb
    if kind == "adamw-fp32":
        return bnb.optim.AdamW(params, lr=lr, weight_decay=0.0, optim_bits=32)
    if kind == "adamw-param":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    if kind == "adamw8bit":
        return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=0.0)
    if kind == "paged-adamw8bit":
        return bnb.optim.PagedAdamW8bit(params, lr=lr, weight_decay=0.0)
    raise ValueError(f"unknown optimizer {kind}")


def finite(t):
    return bool(torch.isfinite(t.float()).all())


def judge(losses, margin):
    n = len(losses)
    window = 2 if n >= 4 else 1
    first = sum(losses[:window]) / window
    last = sum(losses[n - window:]) / window
    required = margin * abs(first)
    learned = last < first - required
    return learned, f"loss {first:.6g} -> {last:.6g} (mean of first/last {window} of {n} steps)"


def train(folder, case, record):
    axes, settings = case["axes"], case["settings"]
    record["phase"] = "load"
    model = load_model(folder, axes)
    model = adapt(model, folder, case)
    batch = load_file(os.path.join(folder, "batch.safetensors"))
    ids, labels = batch["input_ids"], batch["labels"]
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = make_optimizer([p for _, p in trainable], axes["optimizer"], settings["learning_rate"])
    amp = axes["amp"]
    scaler = torch.amp.GradScaler("cpu") if amp == "fp16" else None
    torch.manual_seed(case["dropout_seed"])  # the generator of every LoRA dropout
    total = settings["warmup_steps"] + settings["steps"]
    skipped = 0
    for step in range(total):
        record["step"] = step
        record["phase"] = "forward"
        with torch.autocast("cpu", dtype=DTYPES.get(amp, torch.bfloat16), enabled=amp != "none"):
            logits = model(input_ids=ids).logits
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))
        value = loss.item()
        record["losses"].append(value)
        if not math.isfinite(value):
            return "nan_loss", f"loss is {value} at step {step}"
        record["phase"] = "backward"
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler is None:
            for name, p in trainable:
                if p.grad is not None and not finite(p.grad):
                    return "nan_loss", f"gradient of {name} is not finite at step {step}"
        record["phase"] = "optimizer"
        if scaler is not None:
            before = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
            skipped += scaler.get_scale() < before  # a skipped step backs the scale off
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        for name, p in trainable:
            if not finite(p.detach()):
                return "nan_loss", f"parameter {name} is not finite after step {step}"
    record["step"] = -1
    record["phase"] = "none"
    learned, summary = judge(record["losses"], case["no_learning_relative_margin"])
    if learned:
        return "ok", ""
    if skipped:
        summary += f"; the GradScaler skipped {skipped} of {total} steps (inf/NaN gradients)"
    return "no_learning", summary


def run_case(cli, matrix, case_id, folder):
    subprocess.run([cli, "export", case_id, "--matrix", matrix, "--out", folder], check=True)
    with open(os.path.join(folder, "case.json")) as f:
        case = json.load(f)
    record = {"schema": 1, "case": case["case"], "outcome": "ok", "phase": "setup",
              "step": -1, "message": "", "losses": [], "model": case["axes"]["model"],
              "lora_rank": case["settings"]["lora_rank"]}
    start = time.monotonic()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome, message = train(folder, case, record)
        record["outcome"], record["message"] = outcome, message
    except Exception as e:  # the case's failure: classified by the harness's own table
        message = f"{e}"
        record["message"] = message.strip().splitlines()[0] if message.strip() else type(e).__name__
        record["outcome"] = classify(cli, message)
    record["timings"] = {"wall_ms": (time.monotonic() - start) * 1000.0}
    record["losses"] = [v if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
                        for v in record["losses"]]
    return record


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", required=True, help="the qlora-compat binary")
    ap.add_argument("--matrix", required=True)
    ap.add_argument("--out", required=True, help="folder for records.jsonl and environment.json")
    ap.add_argument("--filter", default="")
    ap.add_argument("--work", default="", help="folder for the exported cases (default: a temp one)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as the harness's workers: losses independent of the core count
    listed = subprocess.run([args.cli, "list", "--matrix", args.matrix, "--device", "cpu"]
                            + (["--filter", args.filter] if args.filter else []),
                            check=True, capture_output=True, text=True).stdout.split()
    os.makedirs(args.out, exist_ok=True)
    records_path = os.path.join(args.out, "records.jsonl")
    work = args.work or tempfile.mkdtemp(prefix="qlc-peer-")
    with open(os.path.join(args.out, "environment.json.tmp"), "w") as f:
        json.dump({"peer": versions()}, f, indent=2)
    os.replace(os.path.join(args.out, "environment.json.tmp"), os.path.join(args.out, "environment.json"))
    tmp = records_path + ".tmp"
    with open(tmp, "w") as out:
        for i, case_id in enumerate(listed, 1):
            record = run_case(args.cli, args.matrix, case_id, os.path.join(work, f"case{i}"))
            out.write(json.dumps(record) + "\n")
            out.flush()
            print(f"[{i}/{len(listed)}] {case_id}: {record['outcome']}"
                  + (f" ({record['message']})" if record["message"] else ""), flush=True)
    os.replace(tmp, records_path)


if __name__ == "__main__":
    main()
