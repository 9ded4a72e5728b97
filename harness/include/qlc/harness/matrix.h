// Matrix files: YAML with GitHub Actions' matrix semantics, so CI users already know them.
//
//   matrix:
//     weights: [none, nf4, fp4, int8]       # each axis a list; the cases are the product
//     double_quant: [false, true]
//     ...
//     exclude:                              # drop every combination matching all given keys
//       - {weights: none, double_quant: true}
//     include:                              # extend matching combinations, or add new ones
//       - {weights: nf4, double_quant: true, param_dtype: bf16, compute_dtype: bf16, optimizer: adamw8bit}
//   settings: {model: tiny, steps: 8}       # optional RunSettings overrides
//
// Axes not given take the Case defaults; `device` defaults to `auto`, resolved by the caller.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "qlc/harness/case.h"

namespace qlc::harness {

// Every error names the file, line and column and what was expected, e.g.
// "cases/x.yaml:7:15: unknown value 'bf8' for axis 'param_dtype' (expected fp32, fp16, bf16)".
class MatrixError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Matrix {
  std::string source;          // the file it came from
  std::vector<Case> cases;     // in expansion order, duplicates removed, device possibly "auto"
  RunSettings settings;
};

Matrix load_matrix(const std::string& path);
Matrix parse_matrix(const std::string& yaml_text, const std::string& source_name);

// Replaces device "auto" by `resolved` ("cuda:0" when a GPU is usable, else "cpu").
void resolve_device(Matrix& matrix, const std::string& resolved);

// Filter: a case is kept when its id contains any of the comma-separated substrings
// (`--filter nf4-dq,int8`); an empty filter keeps all.
std::vector<Case> filter_cases(const std::vector<Case>& cases, const std::string& filter);

// Shard i of n (1-based, `--shard 2/4`): every n-th case starting at i-1, stable across machines.
std::vector<Case> shard_cases(const std::vector<Case>& cases, int index, int count);

}  // namespace qlc::harness
