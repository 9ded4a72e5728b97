// The dtype audit (see audit.h): probes, then a walk over the built model and its optimizer.
#include "qlc/harness/audit.h"

#include <ATen/ATen.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "training/checkpoint.h"
#include "qlc/harness/classify.h"
#include "training/model.h"
#include "training/synthetic_task.h"
#include "qlc/kernels/adamw.h"

namespace qlc::harness {
namespace {

std::string dtype_name(at::ScalarType t) {
  if (t == at::kHalf) return "fp16";
  if (t == at::kBFloat16) return "bf16";
  if (t == at::kFloat) return "fp32";
  return std::string(c10::toString(t));
}

// "" when a 2x2 matrix product in `dtype` runs on `device`, else LibTorch's message (the detect
// step of the rules about missing fp16/bf16 kernels).
std::string matmul_probe(at::ScalarType dtype, const at::Device& device) {
  try {
    const auto options = at::TensorOptions().dtype(dtype).device(device);
    at::mm(at::ones({2, 2}, options), at::ones({2, 2}, options));
    return "";
  } catch (const std::exception& e) {
    return first_lines(e.what(), 1);
  }
}

// The dtype the base layer computes in, as its forward does.
at::ScalarType base_compute_dtype(const BaseLinear& base, at::ScalarType input) {
  if (const auto* l4 = dynamic_cast<const Linear4bit*>(&base)) return l4->compute_dtype();
  if (const auto* dense = dynamic_cast<const DenseLinear*>(&base)) return dense->weight().scalar_type();
  return input;  // Linear8bitLt computes in its input's dtype
}

// Where the case's activations pass through fp16, as " and "-joined reasons ("" when nowhere).
std::string fp16_routes(const Case& c, const BuildOptions& o, at::ScalarType module_dtype) {
  std::string routes;
  const auto add = [&routes](const std::string& r) { routes += (routes.empty() ? "" : " and ") + r; };
  if (module_dtype == at::kHalf) add("the fp16 model (torch_dtype=float16)");
  if (is_4bit(c.weights) && o.compute_dtype == at::kHalf) add("Linear4bit's fp16 compute dtype");
  if (c.amp == Amp::kFp16) add("fp16 autocast (amp=fp16)");
  return routes;
}

// F04: the largest |input| of every linear layer in one forward pass of the same model in fp32
// (what forward hooks show a user), against fp16's largest finite value.
void audit_fp16_range(const Case& c, const RunSettings& settings, const std::string& work_dir,
                      const ModelConfig& config, const std::string& routes,
                      std::vector<AuditFinding>& findings) {
  constexpr double kFp16Max = 65504.0;
  Case fp32 = c;
  fp32.param_dtype = fp32.compute_dtype = Dtype::kFp32;
  fp32.amp = Amp::kNone;
  BuildOptions options = build_options_for(fp32, settings, at::Device(c.device));
  const std::string path = checkpoint_path_for(work_dir, config, Dtype::kFp32, settings.seed);
  write_checkpoint(path, config, at::kFloat, settings.seed);
  Model model(config, read_checkpoint(path, config), options);
  const SyntheticTask task =
      make_synthetic_task(config.vocab_size, config.batch_size, config.seq_len, settings.seed);
  const std::vector<double> peaks = model.linear_input_peaks(task.input_ids.to(options.device));
  const std::vector<LinearSpec> specs = linear_specs(config);
  double largest = 0.0;
  for (size_t i = 0; i < peaks.size() && i < specs.size(); ++i) {
    largest = std::max(largest, peaks[i]);
    if (peaks[i] <= kFp16Max) continue;
    char peak[32];
    std::snprintf(peak, sizeof peak, "%.4g", peaks[i]);
    findings.push_back({specs[i].name + " input", "fp16",
                        std::string("its largest |value| ") + peak +
                            " in an fp32 forward pass, above fp16's largest 65504, through " + routes,
                        "overflows to inf in fp16, then NaN: the loss is NaN from the first step "
                        "(activation outliers; compute in bf16 or fp32)"});
  }
  if (largest <= kFp16Max) {
    char peak[32];
    std::snprintf(peak, sizeof peak, "%.4g", largest);
    findings.push_back({"linear layers' inputs", "fp16",
                        std::string("their largest |value| ") + peak +
                            " in an fp32 forward pass, within fp16's 65504, through " + routes,
                        ""});
  }
}

}  // namespace

std::vector<AuditFinding> audit_case(const Case& c, const RunSettings& settings,
                                     const std::string& work_dir) {
  std::vector<AuditFinding> findings;
  const at::Device device(c.device);
  const ModelConfig config = model_preset(c.model);
  const BuildOptions options = build_options_for(c, settings, device);

  // Kernels the case's dtypes need on this device.
  std::vector<std::pair<at::ScalarType, std::string>> products = {
      {options.param_dtype, "the modules and adapters in the parameter dtype"}};
  if (is_4bit(c.weights)) products.push_back({options.compute_dtype, "Linear4bit's compute dtype"});
  for (const auto& [dtype, why] : products) {
    const std::string error = matmul_probe(dtype, device);
    if (!error.empty()) {
      findings.push_back({"matrix products on " + c.device, dtype_name(dtype),
                          why + " (a 2x2 torch.mm probe)", error});
    }
  }

  std::unique_ptr<Model> model;
  try {
    std::filesystem::create_directories(work_dir.empty() ? "." : work_dir);
    const std::string path = checkpoint_path_for(work_dir, config, c.param_dtype, settings.seed);
    write_checkpoint(path, config, options.param_dtype, settings.seed);
    model = std::make_unique<Model>(config, read_checkpoint(path, config), options);
  } catch (const std::exception& e) {
    findings.push_back({"model", dtype_name(options.param_dtype), "loading the checkpoint",
                        first_lines(e.what(), 1)});
    return findings;
  }

  // Adapters against their base layers (the input reaching a layer has the parameter dtype).
  const std::vector<std::string> names = model->trainable_parameter_names();
  size_t name_index = 0;
  for (LoraLinear* layer : model->lora_layers()) {
    const at::ScalarType adapter = layer->lora_a().scalar_type();
    const at::ScalarType compute = base_compute_dtype(layer->base(), options.param_dtype);
    const std::string name = name_index < names.size() ? names[name_index] : "lora_A";
    name_index += 2;  // lora_A, lora_B of each layer
    if (adapter != compute) {
      findings.push_back({name, dtype_name(adapter),
                          "its base layer computing in " + dtype_name(compute) +
                              " (PEFT casts the input to the adapter's dtype and the LoRA output "
                              "back to the base output's)",
                          ""});
    }
    if (is_4bit(c.weights) && compute != options.param_dtype) {
      findings.push_back({name.substr(0, name.rfind(".lora_A")) + ".base_layer", dtype_name(compute),
                          "an input in " + dtype_name(options.param_dtype) +
                              " (Linear4bit casts it to its compute dtype and the output back)",
                          ""});
    }
  }

  // Trainer fp16=True: its GradScaler unscales every trainable gradient and refuses fp16 ones (F01).
  if (c.amp == Amp::kFp16) {
    const std::vector<at::Tensor> params = model->trainable_parameters();
    std::vector<std::string> fp16_names;
    for (size_t i = 0; i < params.size() && i < names.size(); ++i) {
      if (params[i].scalar_type() == at::kHalf) fp16_names.push_back(names[i]);
    }
    if (!fp16_names.empty()) {
      findings.push_back({"trainable parameters (" + std::to_string(fp16_names.size()) + " of " +
                              std::to_string(params.size()) + ", e.g. " + fp16_names.front() + ")",
                          "fp16", "the GradScaler of amp=fp16 (Trainer fp16=True), which unscales their gradients",
                          "GradScaler.unscale_ refuses fp16 gradients: \"Attempting to unscale FP16 "
                          "gradients.\" at the first optimizer step (keep trainable parameters in fp32)"});
    } else {
      findings.push_back({"trainable parameters (" + std::to_string(params.size()) + ")",
                          params.empty() ? "fp32" : dtype_name(params.front().scalar_type()),
                          "the GradScaler of amp=fp16 (Trainer fp16=True), which unscales their gradients",
                          ""});
    }
    // A bf16 model under fp16 autocast (F10): the products come out fp16, the rest stays bf16.
    if (options.param_dtype == at::kBFloat16) {
      findings.push_back({"the model's weights and residual stream (torch_dtype=bfloat16)", "bf16",
                          "fp16 autocast (amp=fp16), which computes the linear layers in fp16",
                          "bf16 and fp16 operands meet: \"expected mat1 and mat2 to have the same dtype, "
                          "but got: c10::BFloat16 != c10::Half\" on CUDA; LibTorch's CPU autocast refuses "
                          "bf16 operands (use bf16=True with a bf16 model)"});
    }
  }

  // Reentrant checkpointing backpropagates into a layer only through inputs that require grad
  // (F08): the embedding output must, as enable_input_require_grads makes it.
  if (c.grad_checkpointing == GradCheckpointing::kReentrant) {
    findings.push_back({"the decoder layers' input (embedding output)", dtype_name(model->module_dtype()),
                        "reentrant gradient checkpointing (use_reentrant=True)",
                        model->input_requires_grad()
                            ? ""
                            : "it does not require grad (frozen embedding, no "
                              "enable_input_require_grads / prepare_model_for_kbit_training): the "
                              "checkpointed layers' adapters get no gradient (\"None of the inputs have "
                              "requires_grad=True\"), the loss does not move"});
  }

  // Activations through fp16 (4-bit compute dtype, autocast or the model dtype): their range (F04).
  const std::string routes = fp16_routes(c, options, model->module_dtype());
  if (!routes.empty()) {
    model.reset();  // one model at a time
    try {
      audit_fp16_range(c, settings, work_dir, config, routes, findings);
    } catch (const std::exception& e) {
      findings.push_back({"activations", "fp32", "a forward pass to measure their range",
                          first_lines(e.what(), 1)});
    }
  }

  // Optimizer states in the parameter dtype: eps must survive the cast.
  if (c.optimizer == OptimizerKind::kAdamWParamDtype && options.param_dtype != at::kFloat) {
    const double eps = kernels::AdamWConfig().eps;  // the runner's, as torch.optim.AdamW's
    const double eps_in_dtype =
        at::scalar_tensor(eps, at::TensorOptions().dtype(at::kDouble)).to(options.param_dtype).item<double>();
    if (eps_in_dtype == 0.0) {
      char eps_text[32];
      std::snprintf(eps_text, sizeof eps_text, "%g", eps);
      findings.push_back({"optimizer states (m, v of every adapter)", dtype_name(options.param_dtype),
                          std::string("eps = ") + eps_text + " in the update m / (sqrt(v) + eps)",
                          "eps is 0 in " + dtype_name(options.param_dtype) +
                              ": an element with zero gradient (every lora_A on the first step, as "
                              "lora_B starts at 0) computes 0 / 0 = NaN"});
    }
  }
  return findings;
}

}  // namespace qlc::harness
