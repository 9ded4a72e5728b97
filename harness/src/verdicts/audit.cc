// The dtype audit (see audit.h): probes, then a walk over the built model and its optimizer.
#include "qlc/harness/audit.h"

#include <ATen/ATen.h>
#include <c10/util/Half.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "training/checkpoint.h"
#include "qlc/harness/classify.h"
#include "training/model.h"
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
