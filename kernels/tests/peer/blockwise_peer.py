"""Generator for blockwise_peer_test.cc: fresh random inputs quantized by bitsandbytes on CPU.

python blockwise_peer.py OUT_DIR   (seed: $QLC_PEER_SEED)

Writes OUT_DIR/blockwise_<case>.safetensors, one per case, holding the input and what
bitsandbytes' CPU backend returns for it:
  4-bit: packed, absmax, dequant (in the input dtype); with double quantization: dq.qabsmax,
         dq.absmax2, dq.offset and dq.dequant (bitsandbytes' quantize_4bit(compress_statistics=True)
         then dequantize_4bit).
  8-bit: q8, absmax8, dequant8 (quantize_blockwise / dequantize_blockwise, signed dynamic map).
  dq.code / code8: the dynamic map bitsandbytes built on this machine and used.
Metadata: kind, quant_type, blocksize, dtype.
"""
import os
import sys

import numpy as np
import torch
import bitsandbytes.functional as F
from safetensors.torch import save_file


def inputs(rng, n, kind):
    if kind == "normal":
        x = rng.standard_normal(n)
    elif kind == "heavy":
        x = rng.standard_t(2.0, n) * 3.0
    elif kind == "zero_blocks":
        x = rng.standard_normal(n)
        x[: min(n, 256)] = 0.0          # whole leading blocks of zeros
        x[-(n % 64 or 64):] = 0.0       # and a zero tail block
    elif kind == "tiny":
        x = rng.standard_normal(n) * 1e-30
    elif kind == "huge":
        x = rng.standard_normal(n) * 1e30
    else:
        raise ValueError(kind)
    return torch.from_numpy(x.astype(np.float32))


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(int(os.environ.get("QLC_PEER_SEED", "1")))
    cases = 0
    for dtype_name, dtype in DTYPES.items():
        for kind in ["normal", "heavy", "zero_blocks", "tiny", "huge"]:
            if dtype_name == "fp16" and kind in ("tiny", "huge"):
                continue  # outside fp16's range: the input itself would be 0 or inf
            for n in [1, 777, 4096 * 3 + 37]:
                x = inputs(rng, n, kind).to(dtype)
                for quant_type in ["nf4", "fp4"]:
                    for blocksize in [64, 128, 256, 4096]:
                        tensors = {"input": x.contiguous()}
                        packed, state = F.quantize_4bit(x, blocksize=blocksize, quant_type=quant_type)
                        tensors["packed"] = packed.reshape(-1).contiguous()
                        tensors["absmax"] = state.absmax.contiguous()
                        tensors["dequant"] = F.dequantize_4bit(packed, state).reshape(-1).contiguous()
                        packed2, state2 = F.quantize_4bit(
                            x, blocksize=blocksize, quant_type=quant_type, compress_statistics=True)
                        assert torch.equal(packed, packed2)
                        tensors["dq.qabsmax"] = state2.absmax.contiguous()
                        tensors["dq.absmax2"] = state2.state2.absmax.contiguous()
                        tensors["dq.offset"] = state2.offset.reshape(1).float().contiguous()
                        # The map this machine's bitsandbytes built (its last bits depend on the CPU).
                        tensors["dq.code"] = state2.state2.code.float().contiguous()
                        tensors["dq.dequant"] = F.dequantize_4bit(packed2, state2).reshape(-1).contiguous()
                        meta = {"kind": "4bit", "quant_type": quant_type, "blocksize": str(blocksize),
                                "dtype": dtype_name, "input_kind": kind,
                                # LibTorch's vector width decides the summation order of the mean.
                                "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
                        name = f"blockwise_4bit_{dtype_name}_{kind}_{n}_{quant_type}_b{blocksize}"
                        save_file(tensors, os.path.join(out_dir, name + ".safetensors"), metadata=meta)
                        cases += 1
                for blocksize in [256, 2048]:
                    q8, state8 = F.quantize_blockwise(x, blocksize=blocksize)
                    tensors = {
                        "input": x.contiguous(),
                        "q8": q8.reshape(-1).contiguous(),
                        "absmax8": state8.absmax.contiguous(),
                        "dequant8": F.dequantize_blockwise(q8, state8).reshape(-1).contiguous(),
                        "code8": state8.code.float().contiguous(),
                    }
                    meta = {"kind": "8bit", "blocksize": str(blocksize), "dtype": dtype_name,
                            "input_kind": kind}
                    name = f"blockwise_8bit_{dtype_name}_{kind}_{n}_b{blocksize}"
                    save_file(tensors, os.path.join(out_dir, name + ".safetensors"), metadata=meta)
                    cases += 1
    print(f"blockwise_peer: wrote {cases} cases to {out_dir} (bitsandbytes {__import__('bitsandbytes').__version__})")


if __name__ == "__main__":
    main()
