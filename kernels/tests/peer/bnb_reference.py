"""bitsandbytes' own reference 4-bit dequantization, and where its compiled CPU kernel departs from it.

Shared by the peer scripts (not a generator: its name does not end in `_peer.py`).

bitsandbytes 0.50.2 dequantizes 4-bit weights on the CPU with a compiled kernel for weights whose
last dimension is even, and with the PyTorch expression `_dequantize_4bit_compute` (its "default"
backend, the format's definition: code[nibble] * absmax[flat_index // blocksize]) otherwise. On
AVX-512 machines the compiled kernel indexes absmax per row, as if every row started a new block:
for a [48, 96] weight at blocksize 64, elements 128..191 (block 2) are scaled by absmax[1]. Rows
whose length is a multiple of the blocksize, and single rows, are unaffected. Observed with
bitsandbytes 0.50.2 and torch 2.13.0 on an AVX-512 Xeon; the AVX2 kernel agrees with the
reference. The peer tests therefore compare our kernels with the reference path, and require the
compiled kernel to agree too except in exactly that known case.
"""

import torch
import bitsandbytes.functional as F
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
from bitsandbytes.backends.utils import _get_4bit_code


def reference_dequantize_4bit(packed, state):
    """dequantize_4bit(packed, state) through bitsandbytes' reference expression."""
    absmax = state.absmax
    if state.nested:  # as F.dequantize_4bit restores nested absmax
        absmax = F.dequantize_blockwise(state.absmax, state.state2) + state.offset
    absmax = absmax.float()
    code = _get_4bit_code(state.quant_type, packed.device)
    return _dequantize_4bit_compute(packed.view(torch.uint8).reshape(-1), absmax, code,
                                    state.blocksize, state.shape, state.dtype)


def compiled_kernel_known_wrong(shape, blocksize):
    """True where the compiled AVX-512 kernel is known to scale some blocks with the wrong absmax."""
    shape = tuple(shape)
    rows = 1
    for d in shape[:-1]:
        rows *= d
    return (torch.backends.cpu.get_cpu_capability() == "AVX512" and len(shape) >= 1
            and rows > 1 and shape[-1] % 2 == 0 and shape[-1] % blocksize != 0)
