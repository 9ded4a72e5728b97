// run_case: one case in this process, phase by phase (see runner.h).
//
//   setup     settings, device, seeds, the deterministic checkpoint written to work_dir
//   load      checkpoint read + quantization + model and adapters built   (load_ms)
//   forward   loss of the fixed batch (fp32), under autocast for amp       (per step)
//   backward  gradients of the adapters (of the scaled loss for amp=fp16)  (per step)
//   optimizer GradScaler unscale/skip/update (amp=fp16), AdamW step,
//             zero_grad                                                   (per step)
//
// Every exception is caught at the end and classified by the message table (classify.cc); what
// the table does not know is a harness_error, so an unknown message is noticed, not guessed.
#include "qlc/harness/runner.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <optional>
#include <stdexcept>
#include <thread>

#include "training/amp.h"
#include "training/cast_policy.h"
#include "training/checkpoint.h"
#include "qlc/harness/classify.h"
#include "qlc/harness/machine_fault.h"
#include "device/device_support.h"
#include "verdicts/learning.h"
#include "training/model.h"
#include "training/optimizer.h"
#include "qlc/kernels/safetensors.h"
#include "training/synthetic_task.h"

namespace qlc::harness {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Median (mean of the middle two for an even count) and p90 (nearest rank: the ceil(0.9 n)-th
// smallest) of the timed steps.
Percentiles percentiles(std::vector<double> v) {
  Percentiles p;
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  p.median_ms = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  const size_t rank = static_cast<size_t>(std::ceil(0.9 * static_cast<double>(n)));
  p.p90_ms = v[std::max<size_t>(rank, 1) - 1];
  return p;
}

// Storage of the frozen linear weights in theory: NF4/FP4 4 bits + one fp32 absmax per block
// (4.5 at blocksize 64); with double quantization one 8-bit absmax per block + one fp32 per 256
// of those (4.127); int8 8 bits + one fp32 scale per row; unquantized the dtype's width.
double theory_bits(const Case& c, int64_t blocksize, int64_t numel, int64_t rows) {
  const double b = static_cast<double>(blocksize);
  switch (c.weights) {
    case WeightFormat::kNf4:
    case WeightFormat::kFp4:
      return c.double_quant ? 4.0 + 8.0 / b + 32.0 / (b * 256.0) : 4.0 + 32.0 / b;
    case WeightFormat::kInt8:
      return 8.0 + 32.0 * static_cast<double>(rows) / static_cast<double>(numel);
    case WeightFormat::kNone:
      return c.param_dtype == Dtype::kFp32 ? 32.0 : 16.0;
  }
  return 0.0;
}

void inject(Fault fault) {
  switch (fault) {
    case Fault::kNone: return;
    case Fault::kSegfault: std::raise(SIGSEGV); return;
    case Fault::kAbort: std::abort();
    case Fault::kHang:
      for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
    case Fault::kThrowHarnessBug: throw std::logic_error("injected harness bug (fault injection)");
  }
}

void validate(const RunSettings& s) {
  if (s.steps < 1) throw std::invalid_argument("settings.steps must be >= 1");
  if (s.warmup_steps < 0) throw std::invalid_argument("settings.warmup_steps must be >= 0");
  if (s.steps + s.warmup_steps < 2) {
    throw std::invalid_argument("at least two steps are needed to tell whether the loss went down");
  }
  if (s.lora_rank < 1) throw std::invalid_argument("settings.lora_rank must be >= 1");
  if (!(s.learning_rate > 0.0f)) throw std::invalid_argument("settings.learning_rate must be > 0");
}

bool all_finite(const at::Tensor& t) { return t.to(at::kFloat).isfinite().all().item<bool>(); }

void fail_with(Record& r, Outcome outcome, Phase phase, const std::string& message) {
  r.outcome = outcome;
  r.phase = phase;
  r.message = first_lines(message);
}

void classify_into(Record& r, Phase phase, const std::string& raw) {
  const std::optional<Outcome> outcome = classify_message(raw);
  if (outcome) {
    fail_with(r, *outcome, phase, raw);
  } else {
    fail_with(r, Outcome::kHarnessError, phase,
              "unclassified error (add its pattern to classify.cc if LibTorch/CUDA raised it): " + raw);
  }
}

// The body of run_case; `phase` tracks where an exception came from.
void run_phases(const Case& c, const RunSettings& settings, const RunContext& ctx, Record& r,
                Phase& phase, double& stepped_ms) {
  phase = Phase::kSetup;
  inject(ctx.fault);
  validate(settings);
  const ModelConfig config = model_preset(c.model);
  if (c.double_quant && c.weights != WeightFormat::kNf4 && c.weights != WeightFormat::kFp4) {
    r.outcome = Outcome::kSkipped;
    r.skip_reason = "double quantization applies to 4-bit (nf4, fp4) weights only";
    return;
  }
  const at::Device device(c.device);
  const std::string unavailable = device_unavailable_reason(device);
  if (!unavailable.empty()) {
    r.outcome = Outcome::kSkipped;
    r.skip_reason = unavailable;
    return;
  }
  at::manual_seed(settings.seed);  // every generator we do not seed ourselves (CUDA dropout)
  if (ctx.cpu_threads > 0) at::set_num_threads(ctx.cpu_threads);

  const at::ScalarType param_dtype = scalar_type(c.param_dtype);
  const std::string checkpoint_path =
      checkpoint_path_for(ctx.work_dir, config, c.param_dtype, settings.seed);
  // The checkpoint is stored in the parameter dtype, as a model is usually loaded in the dtype it
  // was saved in (torch_dtype); writing it is preparation, not part of load_ms. A full disk or an
  // unwritable folder is the machine's fault, not the case's: errno says which (read at once).
  try {
    errno = 0;
    std::filesystem::create_directories(ctx.work_dir.empty() ? "." : ctx.work_dir);
    write_checkpoint(checkpoint_path, config, param_dtype, settings.seed);
  } catch (const std::exception& e) {
    int err = errno;
    if (const auto* fe = dynamic_cast<const std::filesystem::filesystem_error*>(&e)) {
      err = fe->code().value();
    }
    const StorageFault fault = storage_fault_of(err);
    if (fault != StorageFault::kNone) {
      throw StorageFaultError(fault, "writing the checkpoint " + checkpoint_path, err);
    }
    throw;
  }

  // ---- load ----
  phase = Phase::kLoad;
  reset_peak_memory(device);
  const Clock::time_point load_start = Clock::now();
  const BuildOptions options = build_options_for(c, settings, device);
  if (c.weights != WeightFormat::kNone && device.is_cpu() && cast_policy(c.stack).cpu_load_error) {
    throw std::runtime_error(cast_policy(c.stack).cpu_load_error);
  }
  std::unique_ptr<Model> model;
  {
    const Checkpoint checkpoint = read_checkpoint(checkpoint_path, config);
    model = std::make_unique<Model>(config, checkpoint, options);
  }
  synchronize_device(device);
  r.load_ms = ms_between(load_start, Clock::now());
  const int64_t numel = model->base_weight_numel();
  r.base_weight_bits_per_param =
      8.0 * static_cast<double>(model->base_weight_bytes()) / static_cast<double>(numel);
  r.theory_bits_per_param = theory_bits(c, options.blocksize, numel, model->base_weight_rows());

  const SyntheticTask task =
      make_synthetic_task(config.vocab_size, config.batch_size, config.seq_len, settings.seed);
  const at::Tensor input_ids = task.input_ids.to(device);
  const at::Tensor labels = task.labels.to(device);
  kernels::AdamWConfig adamw;
  adamw.lr = settings.learning_rate;
  adamw.weight_decay = 0.0;  // transformers' Trainer default, how users meet these optimizers
  const CastPolicy& policy = cast_policy(c.stack);
  AdamW optimizer(model->trainable_parameters(), c.optimizer, adamw,
                  {policy.cpu_optimizer_32bit_error, policy.cpu_optimizer_8bit_error});
  const std::vector<at::Tensor> params = model->trainable_parameters();
  const std::vector<std::string> names = model->trainable_parameter_names();
  // Trainer's fp16=True: a GradScaler; bf16=True and no flag: none.
  std::optional<GradScaler> scaler;
  if (c.amp == Amp::kFp16) scaler.emplace(device);
  int skipped_steps = 0;

  // ---- steps ----
  std::vector<double> forward_ms, backward_ms, optimizer_ms, step_ms;
  const int total = settings.warmup_steps + settings.steps;
  for (int i = 0; i < total; ++i) {
    r.step = i;
    phase = Phase::kForward;
    const Clock::time_point t0 = Clock::now();
    at::Tensor loss;
    {
      AutocastGuard autocast(device.type(), autocast_dtype(c.amp));
      loss = model->loss(input_ids, labels, /*training=*/true);
    }
    const double loss_value = loss.item<double>();  // waits for the device
    const Clock::time_point t1 = Clock::now();
    r.losses.push_back(loss_value);
    if (!std::isfinite(loss_value)) {
      fail_with(r, Outcome::kNanLoss, phase,
                "loss is " + std::to_string(loss_value) + " at step " + std::to_string(i));
      return;
    }

    phase = Phase::kBackward;
    const Clock::time_point t2 = Clock::now();
    (scaler ? scaler->scale(loss) : loss).backward();
    synchronize_device(device);
    const Clock::time_point t3 = Clock::now();
    // With a GradScaler, inf/NaN gradients are its business: it skips the step.
    for (size_t k = 0; k < params.size() && !scaler; ++k) {
      const at::Tensor& g = params[k].grad();
      if (g.defined() && !all_finite(g)) {
        fail_with(r, Outcome::kNanLoss, phase,
                  "gradient of " + names[k] + " is not finite at step " + std::to_string(i));
        return;
      }
    }

    phase = Phase::kOptimizer;
    const Clock::time_point t4 = Clock::now();
    // scaler.step(optimizer): unscale_ (the fp16-gradient refusal), the step unless a gradient
    // was inf/NaN, then scaler.update().
    const bool found_inf = scaler && scaler->unscale(params);
    if (found_inf) {
      ++skipped_steps;
    } else {
      optimizer.step();
    }
    if (scaler) scaler->update();
    optimizer.zero_grad();
    synchronize_device(device);
    const Clock::time_point t5 = Clock::now();
    for (size_t k = 0; k < params.size(); ++k) {
      if (!all_finite(params[k])) {
        fail_with(r, Outcome::kNanLoss, phase,
                  "parameter " + names[k] + " is not finite after step " + std::to_string(i));
        return;
      }
    }

    stepped_ms += ms_between(t0, t1) + ms_between(t2, t3) + ms_between(t4, t5);
    if (i >= settings.warmup_steps) {
      forward_ms.push_back(ms_between(t0, t1));
      backward_ms.push_back(ms_between(t2, t3));
      optimizer_ms.push_back(ms_between(t4, t5));
      step_ms.push_back(forward_ms.back() + backward_ms.back() + optimizer_ms.back());
    }
  }
  r.forward = percentiles(forward_ms);
  r.backward = percentiles(backward_ms);
  r.optimizer = percentiles(optimizer_ms);
  r.step_time = percentiles(step_ms);
  if (r.step_time.median_ms > 0.0) {
    r.tokens_per_s = static_cast<double>(config.tokens_per_step()) / (r.step_time.median_ms / 1000.0);
  }
  r.peak_memory_bytes = peak_memory_bytes(device);

  phase = Phase::kNone;
  r.step = -1;
  const LearningVerdict verdict = judge_learning(r.losses);
  if (verdict.learned) {
    r.outcome = Outcome::kOk;
  } else {
    std::string why = verdict.summary;
    if (skipped_steps > 0) {
      why += "; the GradScaler skipped " + std::to_string(skipped_steps) + " of " +
             std::to_string(total) + " steps (inf/NaN gradients)";
    }
    fail_with(r, Outcome::kNoLearning, Phase::kNone, why);
  }
}

}  // namespace

Fault fault_from_string(const std::string& s) {
  if (s == "none") return Fault::kNone;
  if (s == "segfault") return Fault::kSegfault;
  if (s == "abort") return Fault::kAbort;
  if (s == "hang") return Fault::kHang;
  if (s == "harness-bug") return Fault::kThrowHarnessBug;
  throw std::invalid_argument("unknown fault '" + s +
                              "' (expected none, segfault, abort, hang, harness-bug)");
}

Record run_case(const Case& c, const RunSettings& settings, const RunContext& ctx) {
  const Clock::time_point start = Clock::now();
  Record r;
  r.case_id = c.id();
  r.model = to_string(c.model);
  r.lora_rank = settings.lora_rank;
  Phase phase = Phase::kSetup;
  double stepped_ms = 0.0;
  try {
    run_phases(c, settings, ctx, r, phase, stepped_ms);
  } catch (const c10::Error& e) {
    classify_into(r, phase, e.what_without_backtrace());
  } catch (const StorageFaultError& e) {
    fail_with(r, Outcome::kMachineFault, phase, e.what());
  } catch (const kernels::SafetensorsError& e) {
    // Our own checkpoint did not read back: a harness bug, with the file and the reason.
    fail_with(r, Outcome::kHarnessError, phase, e.what());
  } catch (const std::bad_alloc& e) {
    fail_with(r, Outcome::kOom, phase, e.what());
  } catch (const std::exception& e) {
    classify_into(r, phase, e.what());
  }
  r.wall_ms = ms_between(start, Clock::now());
  // Everything but the training steps (warm-up included in the steps): setup, checkpoint, load.
  r.overhead_ms = std::max(0.0, r.wall_ms - stepped_ms);
  return r;
}

}  // namespace qlc::harness
