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
//   settings: {steps: 8}                    # optional RunSettings overrides
//
// The axes are case_axes() (case.h): device, weights, double_quant, param_dtype, compute_dtype,
// optimizer, amp, adapter_dtype, prepare_kbit, grad_checkpointing, stack, model. Axes not given
// take the Case defaults; `device` defaults to `auto`, resolved by the caller.
//
// Expansion, as GitHub Actions does it (docs.github.com, "Running variations of jobs in a
// workflow"):
//   1. the product of the axis lists, in file order, the first axis varying slowest;
//   2. `exclude`: drop every combination that matches all keys of an entry (partial entries
//      allowed); each key must be an axis of the product;
//   3. `include`, entry by entry: added to every product combination whose original axes agree
//      with the entry (its other keys are set, overwriting values added by earlier entries, never
//      original ones); an entry that matches no combination becomes a new one.
// Then duplicates (same id) are dropped, the first kept. Every key is a known axis and every
// value valid for it: the file cannot ask for something the harness does not run.
//
// double_quant applies to nf4/fp4 only: for none/int8 it is stored as false, so `double_quant:
// [false, true]` crossed with int8 yields one int8 case, not two with the same id (the shipped
// files still exclude the pair, to say so). Ids stay unambiguous: `nf4-dq` vs `nf4`, never
// `int8-dq`.
//
// Rejected, each with file:line:column: YAML syntax errors, a root other than a mapping with
// `matrix` (required) and `settings`, unknown or duplicate keys, an axis given as anything but a
// non-empty list of scalars, unknown values, empty include/exclude entries, exclude keys that are
// not axes of the product, bad settings (type or range), and a matrix that expands to no case.
#pragma once

#include <cstddef>
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

// Most cases a matrix may expand to (each is a real training run of seconds: 10000 is hours), and
// most training steps per case (settings.steps, like --steps).
constexpr std::size_t kMaxCases = 10000;
constexpr int kMaxSteps = 1000000;

Matrix load_matrix(const std::string& path);
Matrix parse_matrix(const std::string& yaml_text, const std::string& source_name);

// Replaces device "auto" by `resolved` ("cuda:0" when a GPU is usable, else "cpu"), then drops
// cases that became duplicates (`device: [auto, cpu]` on a CPU-only machine). Throws
// std::invalid_argument when `resolved` is not a concrete device.
void resolve_device(Matrix& matrix, const std::string& resolved);

// Filter: a case is kept when its id contains any of the comma-separated substrings
// (`--filter nf4-dq,int8`); an empty filter keeps all. Items are trimmed; empty items ignored,
// but a filter with only empty items (",") throws std::invalid_argument.
std::vector<Case> filter_cases(const std::vector<Case>& cases, const std::string& filter);

}  // namespace qlc::harness
