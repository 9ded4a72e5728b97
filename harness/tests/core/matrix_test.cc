// Matrix files: GitHub Actions' expansion rules, the shipped matrices, errors with
// file:line:column and filters (shards: shard_test.cc).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "qlc/harness/matrix.h"

namespace qlc::harness {
namespace {

std::vector<std::string> ids_of(const std::vector<Case>& cases) {
  std::vector<std::string> out;
  for (const auto& c : cases) out.push_back(c.id());
  return out;
}

std::vector<std::string> expand(const std::string& yaml) {
  return ids_of(parse_matrix(yaml, "test.yaml").cases);
}

// The MatrixError message for `yaml` ("" when it parses).
std::string error_of(const std::string& yaml) {
  try {
    parse_matrix(yaml, "x.yaml");
  } catch (const MatrixError& e) {
    return e.what();
  }
  return "";
}

// The later axes at their defaults (case.h: what a case of the original core ran).
const std::string kDefaultSuffix = "/amp=none/adapter=model/kbit=off/ckpt=off/stack=current/model=tiny";

// An id with device auto (the unresolved default) from its readable parts.
std::string id(const std::string& weights, const std::string& param, const std::string& compute,
               const std::string& optim) {
  return "auto/" + weights + "/param=" + param + "/compute=" + compute + "/optim=" + optim +
         kDefaultSuffix;
}

std::string source_path(const std::string& relative) {
  return std::string(QLC_SOURCE_DIR) + "/" + relative;
}

// --- expansion ----------------------------------------------------------------------------------

// GitHub: "The order of the variables in the matrix determines the order in which the jobs are
// created": the first variable varies slowest.
TEST(MatrixExpansion, ProductInFileOrderFirstAxisSlowest) {
  const auto ids = expand(
      "matrix:\n"
      "  optimizer: [adamw8bit, adamw-fp32]\n"
      "  weights: [int8, nf4, none]\n");
  const std::vector<std::string> expected = {
      id("int8", "fp32", "fp32", "adamw8bit"),  id("nf4", "fp32", "fp32", "adamw8bit"),
      id("none", "fp32", "fp32", "adamw8bit"),  id("int8", "fp32", "fp32", "adamw-fp32"),
      id("nf4", "fp32", "fp32", "adamw-fp32"),  id("none", "fp32", "fp32", "adamw-fp32")};
  EXPECT_EQ(ids, expected);
}

TEST(MatrixExpansion, AxesNotGivenTakeCaseDefaultsAndDeviceAuto) {
  const Matrix m = parse_matrix("matrix:\n  compute_dtype: [bf16]\n", "t.yaml");
  ASSERT_EQ(m.cases.size(), 1u);
  // Case defaults: nf4, no double quant, fp32 params, adamw-fp32; device defaults to auto.
  EXPECT_EQ(m.cases[0].id(), "auto/nf4/param=fp32/compute=bf16/optim=adamw-fp32" + kDefaultSuffix);
  EXPECT_EQ(m.source, "t.yaml");
  // No settings: RunSettings defaults.
  EXPECT_EQ(m.settings.steps, 8);
}

// GitHub docs, "Excluding matrix configurations": os [macos, windows] x version [12, 14, 16] x
// environment [staging, production], excluding {macos, 12, production} and the partial
// {windows, 16}: 12 - 1 - 2 = 9 jobs. Mapped: os -> weights (nf4, int8), version -> param_dtype
// (fp32, fp16, bf16), environment -> optimizer (adamw-fp32, adamw8bit).
TEST(MatrixExpansion, GithubExcludeExamplePartialMatchesRemoveAll) {
  const auto ids = expand(
      "matrix:\n"
      "  weights: [nf4, int8]\n"
      "  param_dtype: [fp32, fp16, bf16]\n"
      "  optimizer: [adamw-fp32, adamw8bit]\n"
      "  exclude:\n"
      "    - weights: nf4\n"
      "      param_dtype: fp32\n"
      "      optimizer: adamw8bit\n"
      "    - weights: int8\n"
      "      param_dtype: bf16\n");
  EXPECT_EQ(ids.size(), 9u);
  const std::set<std::string> got(ids.begin(), ids.end());
  EXPECT_EQ(got.count(id("nf4", "fp32", "fp32", "adamw8bit")), 0u);
  EXPECT_EQ(got.count(id("int8", "bf16", "fp32", "adamw-fp32")), 0u);
  EXPECT_EQ(got.count(id("int8", "bf16", "fp32", "adamw8bit")), 0u);
  EXPECT_EQ(got.count(id("nf4", "fp32", "fp32", "adamw-fp32")), 1u);
  EXPECT_EQ(got.count(id("nf4", "bf16", "fp32", "adamw8bit")), 1u);
}

// GitHub docs, "Example: Expanding configurations" (fruit/animal/color/shape). The documented
// result, in order:
//   {apple, cat, pink, circle} {apple, dog, green, circle} {pear, cat, pink} {pear, dog, green}
//   {banana} {banana, cat}
// Mapped: fruit -> weights (apple nf4, pear fp4, banana int8), animal -> param_dtype (cat fp16,
// dog bf16), color -> compute_dtype (green fp16, pink bf16; absent = default fp32),
// shape -> optimizer (circle adamw8bit; absent = default adamw-fp32).
// It shows: an entry without original keys extends every combination; a later entry overwrites
// an added value (pink over green) but only where its original keys match; entries that cannot
// extend any combination become new ones, and later entries do not extend those.
TEST(MatrixExpansion, GithubIncludeExample) {
  const auto ids = expand(
      "matrix:\n"
      "  weights: [nf4, fp4]\n"
      "  param_dtype: [fp16, bf16]\n"
      "  include:\n"
      "    - compute_dtype: fp16\n"
      "    - compute_dtype: bf16\n"
      "      param_dtype: fp16\n"
      "    - weights: nf4\n"
      "      optimizer: adamw8bit\n"
      "    - weights: int8\n"
      "    - weights: int8\n"
      "      param_dtype: fp16\n");
  const std::vector<std::string> expected = {
      id("nf4", "fp16", "bf16", "adamw8bit"),  id("nf4", "bf16", "fp16", "adamw8bit"),
      id("fp4", "fp16", "bf16", "adamw-fp32"), id("fp4", "bf16", "fp16", "adamw-fp32"),
      id("int8", "fp32", "fp32", "adamw-fp32"), id("int8", "fp16", "fp32", "adamw-fp32")};
  EXPECT_EQ(ids, expected);
}

// GitHub docs, "Example: Adding configurations": os [windows, ubuntu] x node [14, 16] plus
// include {windows, node 17}: node 17 would overwrite an original value, so it is a fifth job.
TEST(MatrixExpansion, GithubIncludeThatWouldOverwriteAnOriginalValueAddsACase) {
  const auto ids = expand(
      "matrix:\n"
      "  weights: [nf4, fp4]\n"
      "  param_dtype: [fp32, fp16]\n"
      "  include:\n"
      "    - {weights: nf4, param_dtype: bf16}\n");
  const std::vector<std::string> expected = {
      id("nf4", "fp32", "fp32", "adamw-fp32"), id("nf4", "fp16", "fp32", "adamw-fp32"),
      id("fp4", "fp32", "fp32", "adamw-fp32"), id("fp4", "fp16", "fp32", "adamw-fp32"),
      id("nf4", "bf16", "fp32", "adamw-fp32")};
  EXPECT_EQ(ids, expected);
}

// GitHub docs, "Example: Expanding configurations" (os/node/npm): an entry matching one
// combination on all original keys adds its extra key to that combination only.
TEST(MatrixExpansion, GithubIncludeExtendsOnlyTheMatchingCombination) {
  const auto ids = expand(
      "matrix:\n"
      "  weights: [nf4, fp4]\n"
      "  param_dtype: [fp32, fp16]\n"
      "  include:\n"
      "    - {weights: nf4, param_dtype: fp16, optimizer: adamw8bit}\n");
  const std::vector<std::string> expected = {
      id("nf4", "fp32", "fp32", "adamw-fp32"), id("nf4", "fp16", "fp32", "adamw8bit"),
      id("fp4", "fp32", "fp32", "adamw-fp32"), id("fp4", "fp16", "fp32", "adamw-fp32")};
  EXPECT_EQ(ids, expected);
}

// GitHub: "If you don't specify any matrix variables, all configurations under include will run."
TEST(MatrixExpansion, IncludeOnlyMakesOneCasePerEntry) {
  const auto ids = expand(
      "matrix:\n"
      "  include:\n"
      "    - {weights: int8, optimizer: adamw8bit}\n"
      "    - {weights: none, param_dtype: bf16}\n"
      "    - {weights: int8, optimizer: adamw8bit}\n");  // duplicate: dropped
  const std::vector<std::string> expected = {id("int8", "fp32", "fp32", "adamw8bit"),
                                             id("none", "bf16", "fp32", "adamw-fp32")};
  EXPECT_EQ(ids, expected);
}

// GitHub: "All include combinations are processed after exclude. This allows you to use include
// to add back combinations that were previously excluded."
TEST(MatrixExpansion, IncludeAddsBackWhatExcludeRemoved) {
  const auto ids = expand(
      "matrix:\n"
      "  weights: [nf4, fp4]\n"
      "  exclude:\n"
      "    - weights: fp4\n"
      "  include:\n"
      "    - weights: fp4\n"
      "      optimizer: paged-adamw8bit\n");
  const std::vector<std::string> expected = {id("nf4", "fp32", "fp32", "adamw-fp32"),
                                             id("fp4", "fp32", "fp32", "paged-adamw8bit")};
  EXPECT_EQ(ids, expected);
}

// matrix.h: double_quant is meaningless for none/int8 and stored as false there. 3 formats x 2
// = 6 combinations; none x 2 -> 1 case, nf4 x 2 -> 2, int8 x 2 -> 1: 4 cases.
TEST(MatrixExpansion, DoubleQuantCollapsesForFormatsWithoutAbsmax) {
  const Matrix m = parse_matrix(
      "matrix:\n"
      "  weights: [none, nf4, int8]\n"
      "  double_quant: [false, true]\n",
      "t.yaml");
  const std::vector<std::string> expected = {
      id("none", "fp32", "fp32", "adamw-fp32"), id("nf4", "fp32", "fp32", "adamw-fp32"),
      id("nf4-dq", "fp32", "fp32", "adamw-fp32"), id("int8", "fp32", "fp32", "adamw-fp32")};
  EXPECT_EQ(ids_of(m.cases), expected);
  for (const auto& c : m.cases) {
    if (c.weights != WeightFormat::kNf4) {
      EXPECT_FALSE(c.double_quant) << c.id();
    }
  }
}

// A repeated value is a slip, and 6 axes of 20 copies once took gigabytes before duplicates
// were dropped: an error at the second copy ("fp4" at column 20 of line 2).
TEST(MatrixErrors, DuplicateAxisValueIsAnErrorAtItsPosition) {
  EXPECT_EQ(error_of("matrix:\n  weights: [fp4, nf4, fp4]\n"),
            "x.yaml:2:23: value 'fp4' is listed twice in axis 'weights'");
}

// Counted before the product is built: ten axes of 3-4 values would be hundreds of thousands of
// combinations (and cases that run for days); the error comes at once, at the 'matrix' key.
TEST(MatrixErrors, TooManyCasesIsAnErrorBeforeExpansion) {
  // 4 * 3 * 3 * 4 * 2 * 3 * 3 * 2 * 3 = 31104 combinations.
  const std::string big =
      "matrix:\n  weights: [nf4, fp4, int8, none]\n  param_dtype: [fp32, bf16, fp16]\n"
      "  compute_dtype: [fp32, bf16, fp16]\n"
      "  optimizer: [adamw-fp32, adamw-param, adamw8bit, paged-adamw8bit]\n"
      "  double_quant: [false, true]\n  amp: [none, fp16, bf16]\n"
      "  adapter_dtype: [peft, base, model]\n  prepare_kbit: [off, on]\n"
      "  grad_checkpointing: [off, reentrant, non-reentrant]\n";
  const std::string e = error_of(big);
  EXPECT_EQ(e.rfind("x.yaml:1:1: the matrix has more than 10000 cases", 0), 0u) << e;
}

// yaml-cpp's Load reads the first document only: a second one would be silently dropped.
TEST(MatrixErrors, SecondYamlDocumentIsAnError) {
  const std::string e = error_of("matrix:\n  weights: [nf4]\n---\nmatrix:\n  weights: [fp4]\n");
  EXPECT_NE(e.find("second YAML document"), std::string::npos) << e;
  EXPECT_EQ(e.rfind("x.yaml:", 0), 0u) << e;
}

// Found by fuzzing (fuzz/regressions/matrix/): yaml-cpp 0.7 never returns, allocating without
// end, on a ',' where a top-level node starts. Each of these used to hang the parser; now each is
// one error at the ','. The commas YAML allows (in [ ] and { }, inside scalars, quoted, in block
// scalars and comments) still parse.
TEST(MatrixErrors, CommaWhereANodeStartsIsAnErrorNotAHang) {
  const std::pair<const char*, const char*> refused[] = {
      {", a", "x.yaml:1:1:"},
      {"# a comment\n, a", "x.yaml:2:1:"},
      {"---\n, a", "x.yaml:2:1:"},
      {"--- , a", "x.yaml:1:5:"},
      {"!tag , a", "x.yaml:1:6:"},
      {"&anchor , a", "x.yaml:1:9:"},
      {"!tag,a", "x.yaml:1:5:"},
      {"&a,b", "x.yaml:1:3:"},
      {"'a'&b,c", "x.yaml:1:6:"},
      {"\"a\" !t,c", "x.yaml:1:7:"},
      {"- a\n, b", "x.yaml:2:1:"},
      {"matrix:\n  weights: [nf4]\n, x\n", "x.yaml:3:1:"},
      {"matrix:\n  include:\n    - {weights: nf4\n, param_dtype: fp32}\n", "x.yaml:4:1:"},
  };
  for (const auto& [yaml, where] : refused) {
    const std::string e = error_of(yaml);
    EXPECT_EQ(e.rfind(where, 0), 0u) << yaml << "\n" << e;
    EXPECT_NE(e.find("',' where a value starts"), std::string::npos) << e;
  }
  const std::string nul = error_of(std::string("matrix:\n  x\0,", 13));
  EXPECT_EQ(nul.rfind("x.yaml:2:4: a control character", 0), 0u) << nul;
  const std::string fine =
      "# a comment, with commas, , ,\n"
      "matrix:\n"
      "  weights: [nf4, fp4]\n"
      "  include:\n"
      "    - {weights: int8, param_dtype: fp32}\n"
      "settings: {steps: 2,\n"
      "  seed: 7}\n";
  EXPECT_EQ(error_of(fine), "");
  EXPECT_EQ(expand(fine).size(), 3u);
}

// Every input that once broke the parser (fuzz/regressions/matrix/, each named for what it does)
// now ends in a matrix or a MatrixError naming the file: five of them made yaml-cpp 0.7 loop
// forever (this test hung before), one took gigabytes, others slipped through unchecked.
TEST(MatrixErrors, EveryFuzzRegressionInputEndsInAnErrorOrAMatrix) {
  const std::filesystem::path dir =
      std::filesystem::path(QLC_SOURCE_DIR) / "fuzz" / "regressions" / "matrix";
  int inputs = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string e = error_of(text);
    if (!e.empty()) EXPECT_EQ(e.rfind("x.yaml:", 0), 0u) << entry.path() << "\n" << e;
    ++inputs;
  }
  EXPECT_GE(inputs, 10);
  // The loops the comma checks do not name are found by counting the reader's events.
  const std::string e = error_of("---\n!  a\n?     b---\n");
  EXPECT_NE(e.find("never finishes"), std::string::npos) << e;
}

TEST(MatrixExpansion, DevicesAndSettingsAreRead) {
  const Matrix m = parse_matrix(
      "matrix:\n"
      "  device: [cpu, cuda:1]\n"
      "settings:\n"
      "  steps: 3\n"
      "  warmup_steps: 0\n"
      "  lora_rank: 4\n"
      "  lora_alpha: 32\n"
      "  lora_dropout: 0.1\n"
      "  learning_rate: 2e-4\n"
      "  seed: 18446744073709551615\n",
      "t.yaml");
  EXPECT_EQ(ids_of(m.cases), (std::vector<std::string>{
                                 "cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32" + kDefaultSuffix,
                                 "cuda:1/nf4/param=fp32/compute=fp32/optim=adamw-fp32" + kDefaultSuffix}));
  EXPECT_EQ(m.settings.steps, 3);
  EXPECT_EQ(m.settings.warmup_steps, 0);
  EXPECT_EQ(m.settings.lora_rank, 4);
  EXPECT_EQ(m.settings.lora_alpha, 32.0f);
  EXPECT_EQ(m.settings.lora_dropout, 0.1f);
  EXPECT_EQ(m.settings.learning_rate, 2e-4f);
  EXPECT_EQ(m.settings.seed, 18446744073709551615ull);  // 2^64 - 1
}

// --- the shipped matrices -----------------------------------------------------------------------

// 4 weights x 2 double_quant x 3 param x 3 compute x 4 optimizers = 288 combinations; the file
// excludes double_quant for none and int8: 2 x 3 x 3 x 4 = 72; 288 - 72 = 216 cases.
TEST(ShippedMatrices, CoreIsTheOriginal216) {
  const Matrix m = load_matrix(source_path("cases/core.yaml"));
  EXPECT_EQ(m.cases.size(), 216u);
  std::map<std::string, int> per_weights;
  std::set<std::string> ids;
  for (const auto& c : m.cases) {
    EXPECT_EQ(c.device, "auto");
    ids.insert(c.id());
    ++per_weights[c.id().substr(5, c.id().find('/', 5) - 5)];
  }
  EXPECT_EQ(ids.size(), 216u);
  // 36 = 3 x 3 x 4 per weights variant.
  const std::map<std::string, int> expected = {{"none", 36},   {"nf4", 36},  {"nf4-dq", 36},
                                               {"fp4", 36},    {"fp4-dq", 36}, {"int8", 36}};
  EXPECT_EQ(per_weights, expected);
  // Order: weights slowest after device, then double_quant, param, compute, optimizer fastest;
  // none has 36 cases, so the 37th is the first nf4 one, the 73rd the first nf4-dq one.
  EXPECT_EQ(m.cases.front().id(), id("none", "fp32", "fp32", "adamw-fp32"));
  EXPECT_EQ(m.cases[1].id(), id("none", "fp32", "fp32", "adamw-param"));
  EXPECT_EQ(m.cases[36].id(), id("nf4", "fp32", "fp32", "adamw-fp32"));
  EXPECT_EQ(m.cases[72].id(), id("nf4-dq", "fp32", "fp32", "adamw-fp32"));
  EXPECT_EQ(m.cases.back().id(), id("int8", "bf16", "bf16", "paged-adamw8bit"));
  EXPECT_EQ(m.settings.steps, 8);
}

TEST(ShippedMatrices, SmokeIsADozenRepresentativeCases) {
  const Matrix m = load_matrix(source_path("cases/smoke.yaml"));
  const std::vector<std::string> expected = {
      id("none", "fp32", "fp32", "adamw-fp32"),   id("none", "bf16", "bf16", "adamw-param"),
      id("nf4", "fp32", "fp32", "adamw-fp32"),    id("nf4-dq", "bf16", "bf16", "adamw8bit"),
      id("nf4-dq", "bf16", "bf16", "paged-adamw8bit"),
      id("nf4-dq", "fp32", "bf16", "adamw-fp32"), id("nf4", "fp16", "fp16", "adamw-fp32"),
      id("nf4", "bf16", "fp32", "adamw-fp32"),    id("fp4", "fp32", "fp32", "adamw-fp32"),
      id("fp4-dq", "fp16", "fp16", "adamw8bit"),  id("int8", "fp32", "fp32", "adamw-fp32"),
      id("int8", "fp16", "fp16", "adamw-param")};
  EXPECT_EQ(ids_of(m.cases), expected);
  EXPECT_EQ(m.settings.steps, 4);
}

// --- errors: file:line:column (1-based), counted by hand in each text ---------------------------

TEST(MatrixErrors, YamlSyntaxErrorsCarryTheirPosition) {
  // "  weights: nf4: fp4": the second ':' is column 15.
  EXPECT_EQ(error_of("matrix:\n  weights: nf4: fp4\n"),
            "x.yaml:2:15: YAML syntax error: illegal map value");
  // "  weights: [nf4, fp4]]": the stray ']' is column 22.
  const std::string e = error_of("matrix:\n  weights: [nf4, fp4]]\n");
  EXPECT_EQ(e.rfind("x.yaml:2:22: YAML syntax error: ", 0), 0u) << e;
}

TEST(MatrixErrors, UnknownAxisNamesTheValidOnes) {
  EXPECT_EQ(error_of("matrix:\n"
                     "  weights: [nf4]\n"
                     "  quant_storage: [uint8]\n"),
            "x.yaml:3:3: unknown axis 'quant_storage' (expected device, weights, double_quant, "
            "param_dtype, compute_dtype, optimizer, amp, adapter_dtype, prepare_kbit, "
            "grad_checkpointing, stack, model, include, exclude)");
}

TEST(MatrixErrors, UnknownValueNamesAxisAndValidValues) {
  // Line 7, "  param_dtype: [fp16, bf8]": '[' is column 16, "bf8" starts at column 23.
  EXPECT_EQ(error_of("# comment\n"
                     "\n"
                     "matrix:\n"
                     "  weights: [nf4]\n"
                     "  # another\n"
                     "  device: [cpu]\n"
                     "  param_dtype: [fp16, bf8]\n"),
            "x.yaml:7:23: unknown value 'bf8' for axis 'param_dtype' (expected fp32, fp16, bf16)");
  EXPECT_EQ(error_of("matrix:\n  double_quant: [yes]\n"),
            "x.yaml:2:18: unknown value 'yes' for axis 'double_quant' (expected false, true)");
  EXPECT_EQ(error_of("matrix:\n  device: [gpu]\n"),
            "x.yaml:2:12: unknown value 'gpu' for axis 'device' (expected auto, cpu, cuda:N)");
}

TEST(MatrixErrors, AxisMustBeANonEmptyListOfScalars) {
  // "  weights: nf4": the value starts at column 12.
  const std::string scalar = error_of("matrix:\n  weights: nf4\n");
  EXPECT_EQ(scalar.rfind("x.yaml:2:12: axis 'weights' must be a list of values", 0), 0u) << scalar;
  // "  optimizer: []": '[' at column 14.
  const std::string empty = error_of("matrix:\n  weights: [nf4]\n  optimizer: []\n");
  EXPECT_EQ(empty.rfind("x.yaml:3:14: axis 'optimizer' has an empty list", 0), 0u) << empty;
  // No value at all: point at the key.
  const std::string null_value = error_of("matrix:\n  weights:\n  optimizer: [adamw8bit]\n");
  EXPECT_EQ(null_value.rfind("x.yaml:2:3: axis 'weights' must be a list", 0), 0u) << null_value;
  // A nested list as a value: the inner '[' at column 18.
  const std::string nested = error_of("matrix:\n  weights: [nf4, [fp4]]\n");
  EXPECT_EQ(nested.rfind("x.yaml:2:18: expected a single value for axis 'weights'", 0), 0u)
      << nested;
}

TEST(MatrixErrors, IncludeAndExcludeEntriesAreChecked) {
  // "    - {weights: nf4, param_dtype: fp64}": "fp64" starts at column 35.
  EXPECT_EQ(error_of("matrix:\n"
                     "  include:\n"
                     "    - {weights: nf4, param_dtype: fp64}\n"),
            "x.yaml:3:35: unknown value 'fp64' for axis 'param_dtype' (expected fp32, fp16, bf16)");
  // Unknown key inside an entry: "precision" at column 22.
  const std::string key = error_of("matrix:\n  include:\n    - {weights: nf4, precision: fp16}\n");
  EXPECT_EQ(key.rfind("x.yaml:3:22: unknown axis 'precision'", 0), 0u) << key;
  // include as a mapping instead of a list: the value at 3:5.
  const std::string not_list = error_of("matrix:\n  include:\n    weights: nf4\n");
  EXPECT_EQ(not_list.rfind("x.yaml:3:5: 'include' must be a list of mappings", 0), 0u) << not_list;
  // An entry that is a scalar: "nf4" at 3:7.
  const std::string scalar = error_of("matrix:\n  exclude:\n    - nf4\n  weights: [nf4]\n");
  EXPECT_EQ(scalar.rfind("x.yaml:3:7: each 'exclude' entry must be a mapping", 0), 0u) << scalar;
  // An empty entry would exclude everything / extend everything with nothing.
  const std::string empty = error_of("matrix:\n  weights: [nf4]\n  exclude:\n    - {}\n");
  EXPECT_EQ(empty.rfind("x.yaml:4:7: empty 'exclude' entry", 0), 0u) << empty;
  // GitHub rejects exclude keys that are not matrix variables: the entry at 4:7.
  const std::string not_axis =
      error_of("matrix:\n  weights: [nf4]\n  exclude:\n    - {device: cpu}\n");
  EXPECT_EQ(not_axis.rfind("x.yaml:4:7: exclude key 'device' is not an axis of this matrix", 0), 0u)
      << not_axis;
}

TEST(MatrixErrors, FileStructureIsChecked) {
  EXPECT_EQ(error_of(""), "x.yaml:1:1: empty matrix file (expected a mapping with key 'matrix')");
  EXPECT_EQ(error_of("# only a comment\n"),
            "x.yaml:1:1: empty matrix file (expected a mapping with key 'matrix')");
  EXPECT_EQ(error_of("- weights: [nf4]\n"),
            "x.yaml:1:1: expected a mapping with key 'matrix' at the top level");
  EXPECT_EQ(error_of("settings: {steps: 2}\n"), "x.yaml:1:1: missing key 'matrix'");
  EXPECT_EQ(error_of("matrix:\n  weights: [nf4]\nstrategy: {}\n"),
            "x.yaml:3:1: unknown key 'strategy' (expected matrix, settings)");
  EXPECT_EQ(error_of("matrix:\n  weights: [nf4]\n  weights: [fp4]\n"),
            "x.yaml:3:3: duplicate key 'weights'");
  EXPECT_EQ(error_of("matrix: [nf4]\n").rfind("x.yaml:1:9: 'matrix' must be a mapping", 0), 0u);
  // Everything excluded: reported at the 'matrix' key.
  EXPECT_EQ(error_of("matrix:\n  weights: [nf4]\n  exclude:\n    - weights: nf4\n"),
            "x.yaml:1:1: the matrix expands to no cases");
}

TEST(MatrixErrors, SettingsAreTypedAndRanged) {
  const std::string base = "matrix:\n  weights: [nf4]\nsettings:\n";
  // "  steps: 0": the value at column 10.
  EXPECT_EQ(error_of(base + "  steps: 0\n"),
            "x.yaml:4:10: setting 'steps' must be at least 1, got 0");
  EXPECT_EQ(error_of(base + "  steps: eight\n"),
            "x.yaml:4:10: setting 'steps' must be an integer, got 'eight'");
  // Bounded like --steps (kMaxSteps).
  EXPECT_EQ(error_of(base + "  steps: 1000001\n"),
            "x.yaml:4:10: setting 'steps' must be at most 1000000, got 1000001");
  EXPECT_EQ(error_of(base + "  steps: 1000000\n"), "");
  EXPECT_EQ(error_of(base + "  steps: 2.5\n"),
            "x.yaml:4:10: setting 'steps' must be an integer, got '2.5'");
  EXPECT_EQ(error_of(base + "  seed: -1\n"),
            "x.yaml:4:9: setting 'seed' must be an integer, got '-1'");
  EXPECT_EQ(error_of(base + "  lora_dropout: 1.0\n"),
            "x.yaml:4:17: setting 'lora_dropout' must be in [0, 1), got 1.0");
  EXPECT_EQ(error_of(base + "  learning_rate: 0\n"),
            "x.yaml:4:18: setting 'learning_rate' must be in (0, inf), got 0");
  EXPECT_EQ(error_of(base + "  lora_alpha: .nan\n"),
            "x.yaml:4:15: setting 'lora_alpha' must be a number, got '.nan'");
  EXPECT_EQ(error_of(base + "  steps: [8]\n").rfind("x.yaml:4:10: setting 'steps' must be", 0), 0u);
  const std::string unknown = error_of(base + "  epochs: 3\n");
  EXPECT_EQ(unknown.rfind("x.yaml:4:3: unknown setting 'epochs' (expected steps,", 0), 0u)
      << unknown;
  // The model preset moved from the settings to the axes: the old spelling says where it went.
  EXPECT_EQ(error_of(base + "  model: tiny\n"),
            "x.yaml:4:3: 'model' is an axis now: list it under matrix, e.g. model: [tiny]");
}

TEST(MatrixErrors, LoadNamesTheFileItCannotRead) {
  const std::string path = source_path("cases/no-such-matrix.yaml");
  try {
    load_matrix(path);
    FAIL() << "loaded a missing file";
  } catch (const MatrixError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ": cannot read matrix file", 0), 0u) << e.what();
  }
  EXPECT_THROW(load_matrix(source_path("cases")), MatrixError);
}

// --- filter, device resolution ----------------------------------------------------------------

class ShippedDefault : public ::testing::Test {
 protected:
  void SetUp() override { cases_ = load_matrix(source_path("cases/core.yaml")).cases; }
  std::vector<Case> cases_;
};

TEST_F(ShippedDefault, FilterKeepsIdsContainingAnyItem) {
  // Per weights variant 36 cases (see DefaultIsTheFullMatrix); "nf4" matches nf4 and nf4-dq.
  EXPECT_EQ(filter_cases(cases_, "").size(), 216u);
  // Only empty parts: the user meant to select something; running everything would be wrong.
  EXPECT_THROW(filter_cases(cases_, ","), std::invalid_argument);
  EXPECT_THROW(filter_cases(cases_, " , "), std::invalid_argument);
  EXPECT_EQ(filter_cases(cases_, "nf4-dq,").size(), 36u);
  EXPECT_EQ(filter_cases(cases_, "nf4-dq").size(), 36u);
  EXPECT_EQ(filter_cases(cases_, "nf4").size(), 72u);
  EXPECT_EQ(filter_cases(cases_, "nf4-dq,int8").size(), 72u);
  EXPECT_EQ(filter_cases(cases_, " nf4-dq , int8 ").size(), 72u);
  // A third of the cases compute in fp16: 216 / 3.
  EXPECT_EQ(filter_cases(cases_, "compute=fp16").size(), 72u);
  EXPECT_TRUE(filter_cases(cases_, "fp8").empty());
  // A full id selects exactly that case (the reproduction command).
  const std::string one = "auto/fp4-dq/param=bf16/compute=fp16/optim=adamw8bit" + kDefaultSuffix;
  EXPECT_EQ(ids_of(filter_cases(cases_, one)), std::vector<std::string>{one});
  // Order is kept.
  const auto kept = filter_cases(cases_, "int8,none");
  for (std::size_t i = 1; i < kept.size(); ++i) {
    const auto a = std::find(cases_.begin(), cases_.end(), kept[i - 1]);
    const auto b = std::find(cases_.begin(), cases_.end(), kept[i]);
    EXPECT_LT(a, b);
  }
}

TEST(ResolveDevice, ReplacesAutoAndDropsNewDuplicates) {
  const std::string text = "matrix:\n  device: [auto, cpu]\n  weights: [nf4, int8]\n";
  Matrix on_cpu = parse_matrix(text, "t.yaml");
  ASSERT_EQ(on_cpu.cases.size(), 4u);
  resolve_device(on_cpu, "cpu");
  EXPECT_EQ(ids_of(on_cpu.cases),
            (std::vector<std::string>{"cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32" + kDefaultSuffix,
                                      "cpu/int8/param=fp32/compute=fp32/optim=adamw-fp32" + kDefaultSuffix}));
  Matrix on_gpu = parse_matrix(text, "t.yaml");
  resolve_device(on_gpu, "cuda:0");
  EXPECT_EQ(ids_of(on_gpu.cases),
            (std::vector<std::string>{"cuda:0/nf4/param=fp32/compute=fp32/optim=adamw-fp32" + kDefaultSuffix,
                                      "cuda:0/int8/param=fp32/compute=fp32/optim=adamw-fp32" + kDefaultSuffix,
                                      "cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32" + kDefaultSuffix,
                                      "cpu/int8/param=fp32/compute=fp32/optim=adamw-fp32" + kDefaultSuffix}));
  EXPECT_THROW(resolve_device(on_gpu, "auto"), std::invalid_argument);
  EXPECT_THROW(resolve_device(on_gpu, "gpu"), std::invalid_argument);
}

}  // namespace
}  // namespace qlc::harness
