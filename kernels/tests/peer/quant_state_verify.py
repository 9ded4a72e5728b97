"""Loads a checkpoint that qlora-compat wrote with bitsandbytes, the way transformers does.

Called by quant_state_peer_test.cc as `python quant_state_verify.py <file.safetensors>`. The file
holds 4-bit weights under transformers' keys plus, per case, our dequantization (<case>.expected)
and the weight we quantized (<case>.input); its metadata "cases" lists them. For each case this
script:
  1. builds the parameter with Params4bit.from_prequantized (QuantState.from_dict inside), as
     transformers' bitsandbytes quantizer does when loading a pre-quantized checkpoint;
  2. dequantizes it with bitsandbytes' reference path and requires our stored values exactly, and
     with its compiled CPU kernel, which must agree too except where bnb_reference.py documents
     that kernel's known error;
  3. re-serializes the loaded state with QuantState.as_dict(packed=True) and requires the same
     tensors and the same packed JSON bytes as we wrote;
  4. quantizes <case>.input with bitsandbytes and requires our packed codes and absmax (and, where
     the double-quantization tensors).
Prints one line per failure and "quant_state_verify: OK <n> weights" at the end; exits 1 on failure.
"""

import json
import sys

import bitsandbytes as bnb
import bitsandbytes.functional as F
import torch
from safetensors import safe_open

from bnb_reference import compiled_kernel_known_wrong, reference_dequantize_4bit


def main(path):
    with safe_open(path, framework="pt") as f:
        cases = json.loads(f.metadata()["cases"])
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)
            print(f"quant_state_verify: FAIL {what}")

    for c in cases:
        name, case, shape = c["name"], c["case"], tuple(c["shape"])
        stats = {k: v for k, v in tensors.items() if k.startswith(name + ".")}
        param = bnb.nn.Params4bit.from_prequantized(data=tensors[name], quantized_stats=dict(stats),
                                                    requires_grad=False, device="cpu")
        state = param.quant_state
        check(state.quant_type == c["quant_type"], f"{name}: quant_type {state.quant_type}")
        check(state.nested == c["double_quant"], f"{name}: nested {state.nested}")
        expected = tensors[f"{case}.expected"]
        got = reference_dequantize_4bit(param.data, state).reshape(shape)
        check(got.dtype == expected.dtype, f"{name}: dequantized dtype {got.dtype}, ours {expected.dtype}")
        check(got.dtype == expected.dtype and torch.equal(got, expected),
              f"{name}: bitsandbytes' dequantization differs from ours")
        compiled = F.dequantize_4bit(param.data, state).reshape(shape)
        if not torch.equal(compiled, got):
            known = compiled_kernel_known_wrong(shape, state.blocksize)
            check(known, f"{name}: bitsandbytes' compiled CPU dequantization differs from its reference path")
            if known:
                print(f"quant_state_verify: NOTE {name}: bitsandbytes' compiled AVX-512 dequantization "
                      f"is wrong for shape {list(shape)} at blocksize {state.blocksize} (known error)")

        for key, value in state.as_dict(packed=True).items():
            stored = stats.get(f"{name}.{key}")
            check(stored is not None and stored.dtype == value.dtype and torch.equal(stored, value),
                  f"{name}: re-serialized '{key}' differs from the file")

        if shape and min(shape) > 0:
            packed, ref = F.quantize_4bit(tensors[f"{case}.input"], blocksize=c["blocksize"],
                                          compress_statistics=c["double_quant"], quant_type=c["quant_type"])
            check(torch.equal(packed.view(-1), tensors[name].view(torch.uint8).view(-1)),
                  f"{name}: bitsandbytes packs the input differently")
            check(torch.equal(ref.absmax, state.absmax), f"{name}: absmax differs")
            if c["double_quant"]:
                check(torch.equal(ref.state2.absmax, state.state2.absmax), f"{name}: nested_absmax differs")
                check(torch.equal(ref.offset, state.offset), f"{name}: nested_offset differs")
    if failures:
        print(f"quant_state_verify: {len(failures)} failures in {len(cases)} weights")
        return 1
    print(f"quant_state_verify: OK {len(cases)} weights")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: quant_state_verify.py <file.safetensors>")
    sys.exit(main(sys.argv[1]))
