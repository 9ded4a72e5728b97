"""Peer generator: LLM.int8 as bitsandbytes computes it on CPU.

Called as `python int8_peer.py <out_dir>`. For each case a Linear8bitLt with frozen int8 weights
(has_fp16_weights=False, threshold 6.0, as transformers' load_in_8bit builds it) is quantized from a
random weight and run in eval mode (MatMul8bitLt) on an input with and without outlier columns.
Written to <out_dir>/int8_peer.safetensors, per case <c>:
    <c>.w, <c>.bias, <c>.x        inputs (dtype of the case)
    <c>.cb, <c>.scb               the layer's state_dict "weight" (int8) and "SCB"
    <c>.y                         the layer's forward output
    <c>.ca, <c>.sca, <c>.cols     F.int8_vectorwise_quant(x.to(float16), 6.0)
    <c>.w_dq                      F.int8_vectorwise_dequant(CB, SCB) (fp32)
    <c>.w_dq_scale_first          CB.to(dtype) * (SCB / 127), as MatMul8bitFp and the backward do
Metadata "cases": the case names.
"""

import json
import logging
import os
import sys

import bitsandbytes as bnb
import bitsandbytes.functional as F
import torch
from safetensors.torch import save_file

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def int8_layer(weight, bias):
    out_features, in_features = weight.shape
    layer = bnb.nn.Linear8bitLt(in_features, out_features, bias=True, has_fp16_weights=False, threshold=6.0)
    layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    layer.bias = torch.nn.Parameter(bias, requires_grad=False)
    return layer.to("cpu").eval()  # Int8Params quantizes on its first move to a device


def main(out_dir):
    logging.disable(logging.WARNING)  # MatMul8bitLt logs its fp16 cast on every call
    torch.manual_seed(int(os.environ.get("QLC_PEER_SEED", "0")))
    os.makedirs(out_dir, exist_ok=True)
    tensors, cases = {}, []
    for dtype_name, dtype in DTYPES.items():
        for k in (64, 300, 1040):  # 1040: the largest K whose fp32 GEMM of int8 codes is exact
            for outliers in (False, True):
                c = f"{dtype_name}_k{k}_{'outliers' if outliers else 'plain'}"
                n, rows = 24, 6
                weight = (torch.randn(n, k) * 0.05).to(dtype)
                weight[3] = 0  # an all-zero weight row
                bias = torch.randn(n).to(dtype)
                x = torch.randn(rows, k)
                x[4] = 0  # an all-zero activation row
                if outliers:
                    x[0, 5] = 40.0
                    x[2, k - 1] = -7.5
                    x[5, 11] = 6.0  # exactly the threshold
                x = x.to(dtype)
                layer = int8_layer(weight, bias)
                cb, scb = layer.state_dict()["weight"], layer.state_dict()["SCB"]
                with torch.no_grad():
                    y = layer(x)
                ca, sca, cols = F.int8_vectorwise_quant(x.to(torch.float16).clone(), threshold=6.0)
                if cols is None:
                    cols = torch.empty(0, dtype=torch.int64)
                tensors.update({
                    f"{c}.w": weight, f"{c}.bias": bias, f"{c}.x": x, f"{c}.cb": cb, f"{c}.scb": scb,
                    f"{c}.y": y, f"{c}.ca": ca, f"{c}.sca": sca, f"{c}.cols": cols.to(torch.int64),
                    f"{c}.w_dq": F.int8_vectorwise_dequant(cb, scb),
                    f"{c}.w_dq_scale_first": cb.to(dtype, copy=True).mul_(scb.unsqueeze(1).mul(1.0 / 127.0)),
                })
                cases.append(c)
    path = os.path.join(out_dir, "int8_peer.safetensors")
    save_file({k: v.contiguous() for k, v in tensors.items()}, path,
              metadata={"cases": json.dumps(cases), "bitsandbytes": bnb.__version__, "torch": torch.__version__})
    print(f"int8_peer: wrote {len(cases)} LLM.int8 cases to {path}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: int8_peer.py <out_dir>")
    main(sys.argv[1])
