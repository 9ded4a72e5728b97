// What a case trains on, exported for a peer (the same step run with transformers + PEFT +
// bitsandbytes from PyPI): the inputs bit for bit, so that first losses can be compared exactly
// where the dtype path is the same.
//
//   DIR/config.json          transformers' LlamaConfig of the case's model preset
//   DIR/model.safetensors    the checkpoint the worker writes (param_dtype, LLaMA names)
//   DIR/batch.safetensors    input_ids and labels (int64 [batch, seq_len])
//   DIR/lora_init.safetensors  every "<linear>.lora_A.weight" start (fp32); lora_B starts at 0
//   DIR/case.json            the case (id, axes), its settings, the dropout generator's seed and
//                            what the loss and the verdicts are
#pragma once

#include <string>

#include "qlc/harness/case.h"

namespace qlc::harness {

// Writes the files above to `dir` (created if missing), each atomically.
void export_case(const Case& c, const RunSettings& settings, const std::string& dir);

}  // namespace qlc::harness
