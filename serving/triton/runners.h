// What runs a batch for a model instance: the CPU reference interpreter for
// KIND_CPU instances, or an execution context of the device's shared engine
// for KIND_GPU ones. Inputs are read where they are (host or GPU memory) and
// outputs are written where the caller says (Triton's response buffers). No
// Triton API here.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kiln/runtime.h"
#include "model_config.h"

namespace kiln::serving {

// One request's part of a network input: a tensor whose bytes are in host
// memory (gpu -1) or in memory of that GPU (a Buffer never read on the host).
struct InputPart {
  const ir::TensorData* tensor = nullptr;
  int gpu = -1;
};
// The parts of one network input, joined along dim 0 for the run.
using StackedInput = std::vector<InputPart>;

// Where one request's share of one output goes: `bytes` bytes from `offset`
// in the run's output, written to `data` in host memory (gpu -1) or in memory
// of that GPU. data null: nowhere (not asked for, or the response failed).
struct OutputTarget {
  void* data = nullptr;
  size_t offset = 0, bytes = 0;
  int gpu = -1;
};

// Called by a run once its outputs' dims are known (network output order, the
// whole batch) and before it writes any (the GPU runner: before it starts, so
// that a target may be bound to the context, or, where an output's size
// depends on data, once enqueue has found it): fills targets[request][output]
// for each request of the batch (the order of the inputs' parts), each row
// sized to the outputs. Throws to fail the run.
using TargetsFor =
    std::function<void(const std::vector<std::vector<int64_t>>& dims, std::vector<std::vector<OutputTarget>>& targets)>;

class Runner {
 public:
  virtual ~Runner() = default;
  // The GPU whose memory the runner binds and copies directly; -1: it reads
  // inputs from host memory only (and copies to GPU targets synchronously).
  virtual int gpu() const { return -1; }
  // Runs the model once on `inputs` (network input order; each input is the
  // requests' tensors stacked along dim 0, or one tensor) and writes the
  // outputs to the targets `targets_for` gives; returns when all are written.
  // Throws kiln::Error. One call at a time.
  virtual void run(const std::vector<StackedInput>& inputs, const TargetsFor& targets_for) = 0;
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
// graphs repair their addresses when a buffer moves). A batch of one request
// whose input (or output target) is memory of this GPU binds it to the context
// as it is: no copy. Otherwise GPU parts are gathered into the context's
// buffer device to device, host parts into the staging (one host copy) and on
// to the GPU in one transfer per run of adjacent host parts; outputs go to GPU
// targets device to device and to host targets through the staging.
std::unique_ptr<Runner> make_gpu_runner(std::shared_ptr<runtime::Engine> engine, int device);

}  // namespace kiln::serving
