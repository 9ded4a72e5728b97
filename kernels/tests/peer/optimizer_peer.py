"""Generator for optimizer_peer_test.cc: AdamW steps run by bitsandbytes and PyTorch on CPU.

python optimizer_peer.py OUT_DIR   (seed: $QLC_PEER_SEED)

Writes OUT_DIR/optimizer_<case>.safetensors, one per case. Each holds one or two parameter
tensors, `big` (>= 4096 elements: 8-bit states under AdamW8bit) and `small` (< 4096: fp32 states),
with for each:
  <t>.p0             the initial parameter (its dtype)
  <t>.g<k>           the gradient given before step k (k = 1..steps, the parameter's dtype)
  <t>.p              the parameter after `steps` steps
  <t>.state1/state2  the optimizer's states after them (bitsandbytes: uint8 codes or fp32;
                     torch: exp_avg / exp_avg_sq in the parameter's dtype)
  <t>.absmax1/absmax2  8-bit states only
  qmap1 / qmap2      the dynamic maps bitsandbytes built on this machine (8-bit cases)
Metadata: optimizer, dtype, steps, lr, beta1, beta2, eps, weight_decay (repr of the Python
floats), torch_cpu_capability, and `nonfinite_blocks` (8-bit blocks that saw a NaN/Inf gradient).
"""
import os
import sys
import warnings

import numpy as np
import torch
import bitsandbytes as bnb
from safetensors.torch import save_file

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def gradients(rng, n, steps, dtype, kind):
    """Per-element scales spread over four decades (the 8-bit maps' decades all get used), a few
    elements with zero gradient throughout, and for `kind == "tiny"` some whose g^2 underflows fp16."""
    scale = 10.0 ** rng.uniform(-3.0, 1.0, n)
    zero = rng.random(n) < 0.01
    out = []
    for _ in range(steps):
        g = rng.standard_normal(n) * scale
        g[zero] = 0.0
        if kind == "tiny":
            g[: n // 50] = 1e-4 * np.sign(g[: n // 50] + 0.5)
        out.append(torch.from_numpy(g.astype(np.float32)).to(dtype))
    return out


def run(opt_factory, params, grads, steps):
    opt = opt_factory(params)
    for k in range(steps):
        for p, gs in zip(params, grads):
            p.grad = gs[k].clone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # paged on CPU: "falling back to non-paged"
            opt.step()
    return opt


def save_case(out_dir, name, opt, named, grads, p0s, meta, extra=None):
    tensors = {}
    for (tname, p), gs, p0 in zip(named, grads, p0s):
        tensors[f"{tname}.p0"] = p0.contiguous()
        for k, g in enumerate(gs):
            tensors[f"{tname}.g{k + 1}"] = g.contiguous()
        tensors[f"{tname}.p"] = p.detach().clone().contiguous()
        st = opt.state[p]
        if "state1" in st:  # bitsandbytes
            for key in ("state1", "state2", "absmax1", "absmax2"):
                if key in st:
                    tensors[f"{tname}.{key}"] = st[key].reshape(-1).contiguous()
            if "qmap1" in st:
                tensors["qmap1"] = st["qmap1"].float().contiguous()
                tensors["qmap2"] = st["qmap2"].float().contiguous()
        else:  # torch
            tensors[f"{tname}.state1"] = st["exp_avg"].contiguous()
            tensors[f"{tname}.state2"] = st["exp_avg_sq"].contiguous()
    tensors.update(extra or {})
    meta = {k: str(v) for k, v in meta.items()}
    meta["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    save_file(tensors, os.path.join(out_dir, f"optimizer_{name}.safetensors"), metadata=meta)


def hyper(lr, betas, eps, wd):
    return {"lr": repr(lr), "beta1": repr(betas[0]), "beta2": repr(betas[1]), "eps": repr(eps),
            "weight_decay": repr(wd)}


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(int(os.environ.get("QLC_PEER_SEED", "1")))
    steps = 8
    sizes = {"big": 70001, "small": 1000}  # big: 274 blocks, the last one short
    settings = [
        ("default", 1e-3, (0.9, 0.999), 1e-8, 1e-2),
        ("nodecay", 5e-3, (0.8, 0.99), 1e-6, 0.0),
    ]
    cases = 0
    for dtype_name, dtype in DTYPES.items():
        for set_name, lr, betas, eps, wd in settings:
            named_sizes = list(sizes.items())
            p0s = [torch.from_numpy(rng.standard_normal(n).astype(np.float32)).to(dtype) for _, n in named_sizes]
            grads = [gradients(rng, n, steps, dtype, "normal") for _, n in named_sizes]
            meta = dict(hyper(lr, betas, eps, wd), dtype=dtype_name, steps=steps)
            factories = {
                "adamw8bit": lambda ps: bnb.optim.AdamW8bit(ps, lr=lr, betas=betas, eps=eps, weight_decay=wd),
                "paged_adamw8bit": lambda ps: bnb.optim.PagedAdamW8bit(ps, lr=lr, betas=betas, eps=eps,
                                                                       weight_decay=wd),
                "adamw32bit": lambda ps: bnb.optim.AdamW(ps, lr=lr, betas=betas, eps=eps, weight_decay=wd),
            }
            for opt_name, factory in factories.items():
                params = [torch.nn.Parameter(p0.clone()) for p0 in p0s]
                opt = run(factory, params, grads, steps)
                named = [(t, p) for (t, _), p in zip(named_sizes, params)]
                save_case(out_dir, f"{opt_name}_{dtype_name}_{set_name}", opt, named, grads, p0s,
                          dict(meta, optimizer=opt_name))
                cases += 1

    # torch.optim.AdamW, states in the parameter's dtype; "tiny" gradients show fp16's eps problem.
    # beta1 = 0.3 takes lerp's other branch (weight 0.7 >= 0.5).
    for dtype_name, dtype in DTYPES.items():
        for set_name, lr, betas, eps, wd in [("default", 1e-3, (0.9, 0.999), 1e-8, 1e-2),
                                             ("lerp_large_weight", 2e-3, (0.3, 0.95), 1e-8, 0.1)]:
            n = sizes["big"]
            p0 = torch.from_numpy(rng.standard_normal(n).astype(np.float32)).to(dtype)
            gs = gradients(rng, n, steps, dtype, "tiny")
            p = torch.nn.Parameter(p0.clone())
            opt = run(lambda ps: torch.optim.AdamW(ps, lr=lr, betas=betas, eps=eps, weight_decay=wd,
                                                   foreach=False, fused=False), [p], [gs], steps)
            save_case(out_dir, f"torch_adamw_{dtype_name}_{set_name}", opt, [("big", p)], [gs], [p0],
                      dict(hyper(lr, betas, eps, wd), dtype=dtype_name, steps=steps, optimizer="torch_adamw"))
            cases += 1

    # NaN / Inf gradients under AdamW8bit: bitsandbytes' CPU path lets them reach p and the states;
    # the test compares only the blocks that never saw one, and records what bitsandbytes did.
    n = sizes["big"]
    p0 = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    gs = gradients(rng, n, steps, torch.float32, "normal")
    bad = {3: [(5 * 256 + 17, float("nan")), (9 * 256, float("inf")), (9 * 256 + 40, -float("inf"))],
           6: [(20 * 256 + 255, float("nan"))]}
    for k, items in bad.items():
        for i, val in items:
            gs[k - 1][i] = val
    blocks = sorted({i // 256 for items in bad.values() for i, _ in items})
    p = torch.nn.Parameter(p0.clone())
    lr, betas, eps, wd = 1e-3, (0.9, 0.999), 1e-8, 1e-2
    opt = run(lambda ps: bnb.optim.AdamW8bit(ps, lr=lr, betas=betas, eps=eps, weight_decay=wd), [p], [gs], steps)
    save_case(out_dir, "adamw8bit_fp32_nonfinite", opt, [("big", p)], [gs], [p0],
              dict(hyper(lr, betas, eps, wd), dtype="fp32", steps=steps, optimizer="adamw8bit",
                   nonfinite_blocks=",".join(str(b) for b in blocks)))
    cases += 1
    print(f"optimizer_peer: wrote {cases} cases to {out_dir}")


if __name__ == "__main__":
    main()
