// What runs a batch for a model instance: the CPU reference interpreter for
// KIND_CPU instances, or an execution context of the device's shared engine
// for KIND_GPU ones. Host tensors in, host tensors out; no Triton API here.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kiln/runtime.h"
#include "model_config.h"

namespace kiln::serving {

// The parts of one network input, joined along dim 0 for the run.
using StackedInput = std::vector<const ir::TensorData*>;

class Runner {
 public:
  virtual ~Runner() = default;
  // Runs the model once on `inputs` (network input order; each input is the
  // requests' tensors stacked along dim 0, or one tensor) and returns its
  // outputs (network output order). Outputs may view the runner's own memory:
  // they stay valid until its next run. Throws kiln::Error. One call at a time.
  virtual std::vector<ir::TensorData> run(const std::vector<StackedInput>& inputs) = 0;
  // When the last run had gathered its inputs and started them on their way to
  // the GPU (steady clock, ns; 0 when the runner does not tell): the end of
  // Triton's compute_input and the start of compute_infer.
  virtual uint64_t inputs_ready_ns() const { return 0; }
  // A line for the log when the instance ends ("" when there is nothing to say).
  virtual std::string summary() const { return ""; }
};

// The exact (slow) CPU reference interpreter on the plan's network.
std::unique_ptr<Runner> make_reference_runner(std::shared_ptr<const ServedModel> model);

// One engine per GPU, shared by the model's instances on that GPU, created by
// the first instance there; and the runtime cache they share, saved when the
// model unloads.
class DeviceEngines {
 public:
  explicit DeviceEngines(std::shared_ptr<const ServedModel> model);
  std::shared_ptr<runtime::Engine> engine(int device);
  // Saves newly compiled kernels to runtime_cache_path; returns the warnings.
  std::vector<std::string> save_cache();
  // Warnings from loading the runtime cache file.
  const std::vector<std::string>& cache_warnings() const { return cache_warnings_; }

 private:
  std::shared_ptr<const ServedModel> model_;
  std::shared_ptr<runtime::RuntimeCache> cache_;
  std::vector<std::string> cache_warnings_;
  std::mutex mutex_;
  std::map<int, std::shared_ptr<runtime::Engine>> engines_;
};

// An execution context of `engine` with a CUDA stream, device buffers and
// pinned host staging of its own (grown as batches need; the context's native
// graphs repair their addresses when a buffer moves). The requests' inputs are
// gathered straight into the staging (one host copy) and go to the GPU in one
// transfer per input; outputs come back into the staging and are returned as
// views of it.
std::unique_ptr<Runner> make_gpu_runner(std::shared_ptr<runtime::Engine> engine, int device);

}  // namespace kiln::serving
