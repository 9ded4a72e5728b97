"""Peer generator: bitsandbytes 4-bit checkpoints as transformers saves them.

Called as `python quant_state_peer.py <out_dir>` (see CMakeLists.txt). For every case it quantizes
a random weight with bitsandbytes' own Linear4bit / Params4bit (nf4 and fp4, with and without
double quantization, fp32 / fp16 / bf16 weights, even and odd element counts), takes the layer's
state_dict (the keys transformers' save_pretrained writes) and saves it with the `safetensors`
package, together with the input weight and bitsandbytes' own dequantization of it:

    <name>                     the packed weight and its quant-state keys (<name>.absmax, ...)
    <case>.input               the weight before quantization
    <case>.expected            bitsandbytes' dequantize_4bit(weight, quant_state), original shape
    <case>.expected_reference  the same through bitsandbytes' reference path (bnb_reference.py)

The file's metadata "cases" lists {name, case, quant_type, double_quant, dtype, shape, blocksize,
compiled_known_wrong}.
"""

import json
import os
import sys

import bitsandbytes as bnb
import bitsandbytes.functional as F
import torch
from safetensors.torch import save_file

from bnb_reference import compiled_kernel_known_wrong, reference_dequantize_4bit

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def quantized_layer(weight, quant_type, double_quant, blocksize):
    out_features, in_features = weight.shape
    layer = bnb.nn.Linear4bit(in_features, out_features, bias=False,
                              compress_statistics=double_quant, quant_type=quant_type)
    layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, compress_statistics=double_quant,
                                     quant_type=quant_type, blocksize=blocksize, module=layer)
    return layer.to("cpu")  # Params4bit quantizes on its first move to a device


def main(out_dir):
    torch.manual_seed(int(os.environ.get("QLC_PEER_SEED", "0")))
    os.makedirs(out_dir, exist_ok=True)
    tensors, cases = {}, []
    shapes = [((48, 96), 64), ((9, 7), 64), ((33, 40), 128)]  # (9, 7): odd count, short block
    index = 0
    for quant_type in ("nf4", "fp4"):
        for double_quant in (False, True):
            for dtype_name, dtype in DTYPES.items():
                for shape, blocksize in shapes:
                    weight = torch.randn(shape) * 0.05
                    weight[0, 0] = 1.5  # one large value, as real weights have
                    weight = weight.to(dtype)
                    layer = quantized_layer(weight, quant_type, double_quant, blocksize)
                    case = f"layers.{index}"
                    name = f"{case}.proj.weight"
                    for key, value in layer.state_dict().items():
                        tensors[f"{case}.proj.{key}"] = value.contiguous()
                    expected = F.dequantize_4bit(layer.weight.data, layer.weight.quant_state)
                    tensors[f"{case}.expected"] = expected.reshape(shape).contiguous()
                    reference = reference_dequantize_4bit(layer.weight.data, layer.weight.quant_state)
                    tensors[f"{case}.expected_reference"] = reference.reshape(shape).contiguous()
                    tensors[f"{case}.input"] = weight.contiguous()
                    cases.append({"name": name, "case": case, "quant_type": quant_type,
                                  "double_quant": double_quant, "dtype": dtype_name,
                                  "shape": list(shape), "blocksize": blocksize,
                                  "compiled_known_wrong": compiled_kernel_known_wrong(shape, blocksize)})
                    index += 1
    path = os.path.join(out_dir, "quant_state_peer.safetensors")
    save_file(tensors, path, metadata={"format": "pt", "cases": json.dumps(cases),
                                       "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                       "bitsandbytes": bnb.__version__, "torch": torch.__version__})
    print(f"quant_state_peer: wrote {len(cases)} bitsandbytes 4-bit weights to {path}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: quant_state_peer.py <out_dir>")
    main(sys.argv[1])
