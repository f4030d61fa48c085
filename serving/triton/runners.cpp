#include "runners.h"

#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <utility>

#include "kiln/error.h"
#include "kiln/reference.h"
#include "batching.h"

namespace kiln::serving {

namespace {

void check(cudaError_t status, const char* call, int device) {
  if (status == cudaSuccess) return;
  cudaGetLastError();
  fail(ErrorCode::kDevice, call, " on GPU ", device, " failed: ", cudaGetErrorString(status));
}

class ReferenceRunner : public Runner {
 public:
  explicit ReferenceRunner(std::shared_ptr<const ServedModel> model) : model_(std::move(model)) {}
  void run(const std::vector<StackedInput>& inputs, const TargetsFor& targets_for) override {
    const ir::Network& net = model_->plan->network;
    std::map<std::string, ir::TensorData> named;
    for (size_t i = 0; i < inputs.size(); ++i) {
      std::vector<const ir::TensorData*> parts;
      for (const InputPart& part : inputs[i]) {
        if (part.gpu >= 0)
          fail(ErrorCode::kInternal, "the reference runner got input '", net.value(net.inputs()[i]).name,
               "' in GPU memory");
        parts.push_back(part.tensor);
      }
      named[net.value(net.inputs()[i]).name] = concat_batch(parts);
    }
    std::vector<ir::TensorData> outputs = reference::run(net, named);
    std::vector<std::vector<int64_t>> dims;
    for (const ir::TensorData& t : outputs) dims.push_back(t.dims);
    std::vector<std::vector<OutputTarget>> targets(inputs.empty() ? 1 : inputs.front().size(),
                                                   std::vector<OutputTarget>(outputs.size()));
    targets_for(dims, targets);
    for (const std::vector<OutputTarget>& row : targets)
      for (size_t o = 0; o < outputs.size(); ++o) {
        const OutputTarget& target = row[o];
        if (!target.data || !target.bytes) continue;
        if (target.offset + target.bytes > outputs[o].data.size())
          fail(ErrorCode::kInternal, "an output target reaches past output '", net.value(net.outputs()[o]).name, "'");
        if (target.gpu >= 0)
          check(cudaMemcpy(target.data, outputs[o].data.data() + target.offset, target.bytes, cudaMemcpyDefault),
                "cudaMemcpy (output)", target.gpu);
        else
          std::memcpy(target.data, outputs[o].data.data() + target.offset, target.bytes);
      }
  }

 private:
  std::shared_ptr<const ServedModel> model_;
};

// Memory that only grows, so a steady load reuses the same addresses (and the
// context's graphs replay without repair). Device memory, or pinned host
// memory: transfers from it are asynchronous DMA, where pageable memory costs
// the driver a staging copy of its own.
class GrowingBuffer {
 public:
  explicit GrowingBuffer(bool pinned_host = false) : pinned_host_(pinned_host) {}
  GrowingBuffer(GrowingBuffer&& other) noexcept
      : pinned_host_(other.pinned_host_),
        ptr_(std::exchange(other.ptr_, nullptr)),
        capacity_(std::exchange(other.capacity_, 0)) {}
  GrowingBuffer& operator=(GrowingBuffer&&) = delete;
  ~GrowingBuffer() { release(); }
  std::byte* reserve(size_t bytes, int device) {
    if (bytes <= capacity_ && ptr_) return static_cast<std::byte*>(ptr_);
    release();
    capacity_ = std::max<size_t>({bytes, 2 * capacity_, 256});
    if (pinned_host_)
      check(cudaHostAlloc(&ptr_, capacity_, cudaHostAllocDefault), "cudaHostAlloc", device);
    else
      check(cudaMalloc(&ptr_, capacity_), "cudaMalloc", device);
    return static_cast<std::byte*>(ptr_);
  }

 private:
  void release() {
    if (!ptr_) return;
    if (pinned_host_)
      cudaFreeHost(ptr_);
    else
      cudaFree(ptr_);
    ptr_ = nullptr;
  }
  bool pinned_host_;
  void* ptr_ = nullptr;
  size_t capacity_ = 0;
};

using Clock = std::chrono::steady_clock;
double micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// Memory of a request bound to the context as it is must keep the alignment of
// the context's own buffers (cudaMalloc's): libraries choose kernels by
// alignment, and the context's graphs patch a moved address in place only
// when the move keeps it.
constexpr uintptr_t kBindAlignment = 256;
bool bindable(const void* p) { return reinterpret_cast<uintptr_t>(p) % kBindAlignment == 0; }

class GpuRunner : public Runner {
 public:
  GpuRunner(std::shared_ptr<runtime::Engine> engine, int device) : engine_(std::move(engine)), device_(device) {
    check(cudaSetDevice(device_), "cudaSetDevice", device_);
    context_ = engine_->create_context();
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags", device_);
    for (int io = 0; io < context_->io_count(); ++io) {
      device_buffers_.emplace_back(false);
      staging_.emplace_back(true);
    }
    const ir::Network& net = engine_->plan().network;
    for (ir::ValueId id : net.outputs()) sized_by_data_ = sized_by_data_ || net.size_depends_on_data(id);
    size_t outputs = net.outputs().size();
    output_dims_.resize(outputs);
    output_bytes_.resize(outputs);
    in_place_.resize(outputs);
  }
  ~GpuRunner() override {
    if (stream_) {
      cudaSetDevice(device_);
      cudaStreamSynchronize(stream_);
      cudaStreamDestroy(stream_);
    }
  }

  int gpu() const override { return device_; }

  void run(const std::vector<StackedInput>& inputs, const TargetsFor& targets_for) override {
    // Triton runs each instance on a thread of its own; the device is per thread.
    check(cudaSetDevice(device_), "cudaSetDevice", device_);
    try {
      run_on_stream(inputs, targets_for);
    } catch (...) {
      // Copies already queued read and write the requests' buffers, which are
      // released once the error is answered.
      cudaStreamSynchronize(stream_);
      throw;
    }
  }

  uint64_t inputs_ready_ns() const override { return inputs_ready_ns_; }

  std::string summary() const override {
    runtime::ExecutionContext::GraphStats g = context_->graph_stats();
    std::string line = str("GPU ", device_, ": ", g.calls, " runs, ", g.direct, " direct, ", g.captures, " captures, ",
                           g.replays, " replays, ", g.pointer_repairs, " pointer repairs (", g.pointer_patches,
                           " patched), ", g.kernel_swaps, " kernel swaps");
    for (const auto& [reason, count] : g.fallbacks) line += str(", fallback '", reason, "' x", count);
    if (times_.runs) {
      double n = double(times_.runs);
      line += str("; in place (no copy): ", times_.inputs_in_place, " of ", times_.inputs, " inputs, ",
                  times_.outputs_in_place, " of ", times_.outputs, " outputs; per run: shapes and response buffers ",
                  times_.targets_us / n, " us, gathering inputs ", times_.gather_us / n,
                  " us, addresses, enqueue and copies ", times_.enqueue_us / n, " us, waiting for the GPU ",
                  times_.wait_us / n, " us, host outputs ", times_.scatter_us / n, " us");
    }
    return line;
  }

 private:
  void run_on_stream(const std::vector<StackedInput>& inputs, const TargetsFor& targets_for) {
    Clock::time_point started = Clock::now();
    // Shapes first: the outputs' dims decide the response buffers, which may
    // be bound to the context before the run. Outputs sized by data go to the
    // runner's buffers, sized at the plan's bounds, and their targets are
    // asked for once enqueue has read their sizes back.
    for (size_t i = 0; i < inputs.size(); ++i) {
      dims_ = inputs[i].front().tensor->dims;
      if (inputs[i].size() > 1) {
        dims_[0] = 0;
        for (const InputPart& part : inputs[i]) dims_[0] += part.tensor->dims[0];
      }
      context_->set_input_shape(int(i), dims_);  // inputs come first, in network order
    }
    const size_t first_output = inputs.size();
    targets_.resize(inputs.empty() ? 1 : inputs.front().size());
    if (sized_by_data_) {
      const ir::Network& net = engine_->plan().network;
      for (size_t o = 0; o < output_dims_.size(); ++o)
        set_output_dims(o, context_->max_tensor_shape(net.value(net.outputs()[o]).name));
    } else {
      ask_for_targets(first_output, targets_for);
    }
    Clock::time_point targeted = Clock::now();

    for (size_t i = 0; i < inputs.size(); ++i) bind_input(i, inputs[i]);
    Clock::time_point gathered = Clock::now();
    inputs_ready_ns_ = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(gathered.time_since_epoch()).count());

    host_outputs_.assign(output_dims_.size(), nullptr);
    for (size_t o = 0; o < output_dims_.size(); ++o) bind_output(first_output + o, o);
    context_->enqueue(stream_);
    if (sized_by_data_) ask_for_targets(first_output, targets_for);
    for (size_t o = 0; o < output_dims_.size(); ++o) copy_output(first_output + o, o);
    Clock::time_point enqueued = Clock::now();
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize", device_);
    Clock::time_point synchronized = Clock::now();
    for (size_t o = 0; o < output_dims_.size(); ++o) {
      if (!host_outputs_[o]) continue;
      for (const std::vector<OutputTarget>& row : targets_)
        if (row[o].data && row[o].gpu < 0 && row[o].bytes)
          std::memcpy(row[o].data, host_outputs_[o] + row[o].offset, row[o].bytes);
    }
    Clock::time_point done = Clock::now();
    times_.runs += 1;
    times_.targets_us += micros(targeted - started);
    times_.gather_us += micros(gathered - targeted);
    times_.enqueue_us += micros(enqueued - gathered);
    times_.wait_us += micros(synchronized - enqueued);
    times_.scatter_us += micros(done - synchronized);
  }

  // Assigned, not replaced: a steady load reuses each output's dims vector.
  void set_output_dims(size_t o, const std::vector<int64_t>& dims) {
    const ir::Network& net = engine_->plan().network;
    output_dims_[o] = dims;
    output_bytes_[o] = size_t(ir::checked_numel(dims)) * dtype_size(net.value(net.outputs()[o]).dtype);
  }

  // The outputs' dims as the context has them now, and the targets for them.
  void ask_for_targets(size_t first_output, const TargetsFor& targets_for) {
    for (size_t o = 0; o < output_dims_.size(); ++o) set_output_dims(o, context_->tensor_shape(int(first_output + o)));
    for (std::vector<OutputTarget>& row : targets_) row.assign(output_dims_.size(), OutputTarget{});
    targets_for(output_dims_, targets_);
  }

  void copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, const char* what) {
    if (bytes) check(cudaMemcpyAsync(dst, src, bytes, kind, stream_), what, device_);
  }

  // Binds network input `i`: one part in this GPU's memory as it is, else the
  // parts gathered into the context's buffer.
  void bind_input(size_t i, const StackedInput& parts) {
    int io = int(i);
    times_.inputs += 1;
    const InputPart& first = parts.front();
    if (parts.size() == 1 && first.gpu == device_ && bindable(first.tensor->data.data())) {
      times_.inputs_in_place += 1;
      context_->set_tensor_address(io, const_cast<std::byte*>(first.tensor->data.data()));
      return;
    }
    size_t bytes = 0;
    bool any_host = false;
    for (const InputPart& part : parts) {
      bytes += part.tensor->data.size();
      any_host |= part.gpu < 0;
    }
    std::byte* device = device_buffers_[i].reserve(bytes, device_);
    std::byte* host = any_host ? staging_[i].reserve(bytes, device_) : nullptr;
    // Host parts into the staging at their offsets, each run of adjacent ones
    // on to the GPU in one transfer; GPU parts (of any GPU) device to device.
    size_t at = 0, host_from = 0;
    auto send_host = [&] {
      copy(device + host_from, host + host_from, at - host_from, cudaMemcpyHostToDevice, "cudaMemcpyAsync (input)");
    };
    for (const InputPart& part : parts) {
      size_t size = part.tensor->data.size();
      if (part.gpu < 0) {
        if (size) std::memcpy(host + at, part.tensor->data.data(), size);
      } else {
        send_host();
        copy(device + at, part.tensor->data.data(), size, cudaMemcpyDefault, "cudaMemcpyAsync (input, GPU)");
        host_from = at + size;
      }
      at += size;
    }
    send_host();
    context_->set_tensor_address(io, device);
  }

  // Binds output `o` (io index `io`): the one request's target in this GPU's
  // memory as it is, else the context's buffer.
  void bind_output(size_t io, size_t o) {
    times_.outputs += 1;
    const OutputTarget* only = sized_by_data_ || targets_.size() != 1 ? nullptr : &targets_.front()[o];
    in_place_[o] = only && only->data && only->gpu == device_ && only->offset == 0 && only->bytes == output_bytes_[o] &&
                   bindable(only->data);
    if (in_place_[o]) times_.outputs_in_place += 1;
    context_->set_tensor_address(int(io), in_place_[o] ? only->data : device_buffers_[io].reserve(output_bytes_[o], device_));
  }

  // After the enqueue: output `o` from the context's buffer to GPU targets
  // device to device, and to the staging when a target is in host memory.
  void copy_output(size_t io, size_t o) {
    if (in_place_[o]) return;
    size_t bytes = output_bytes_[o];
    std::byte* device = device_buffers_[io].reserve(bytes, device_);
    bool any_host = false;
    for (const std::vector<OutputTarget>& row : targets_) {
      const OutputTarget& t = row[o];
      if (!t.data || !t.bytes) continue;
      if (t.offset + t.bytes > bytes)
        fail(ErrorCode::kInternal, "an output target reaches past output ", o, " (", bytes, " bytes)");
      if (t.gpu >= 0)
        copy(t.data, device + t.offset, t.bytes, cudaMemcpyDefault, "cudaMemcpyAsync (output, GPU)");
      else
        any_host = true;
    }
    if (!any_host) return;
    host_outputs_[o] = staging_[io].reserve(bytes, device_);
    copy(host_outputs_[o], device, bytes, cudaMemcpyDeviceToHost, "cudaMemcpyAsync (output)");
  }

  struct Times {
    uint64_t runs = 0, inputs = 0, inputs_in_place = 0, outputs = 0, outputs_in_place = 0;
    double targets_us = 0, gather_us = 0, enqueue_us = 0, wait_us = 0, scatter_us = 0;  // host time, summed over runs
  };
  std::shared_ptr<runtime::Engine> engine_;
  int device_;
  std::unique_ptr<runtime::ExecutionContext> context_;
  cudaStream_t stream_ = nullptr;
  bool sized_by_data_ = false;  // some output's size depends on data (NonZero's count, ...)
  std::vector<GrowingBuffer> device_buffers_;  // per io index
  std::vector<GrowingBuffer> staging_;         // per io index, pinned host memory
  // Per run, kept so that a steady load allocates nothing.
  std::vector<int64_t> dims_;
  std::vector<std::vector<int64_t>> output_dims_;
  std::vector<size_t> output_bytes_;
  std::vector<char> in_place_;  // per output: bound to the one request's target
  std::vector<std::vector<OutputTarget>> targets_;  // [request][output]
  std::vector<std::byte*> host_outputs_;            // per output: its staging, when a target is in host memory
  Times times_;
  uint64_t inputs_ready_ns_ = 0;
};

}  // namespace

std::unique_ptr<Runner> make_reference_runner(std::shared_ptr<const ServedModel> model) {
  return std::make_unique<ReferenceRunner>(std::move(model));
}

std::unique_ptr<Runner> make_gpu_runner(std::shared_ptr<runtime::Engine> engine, int device) {
  return std::make_unique<GpuRunner>(std::move(engine), device);
}

DeviceEngines::DeviceEngines(std::shared_ptr<const ServedModel> model) : model_(std::move(model)) {}

std::shared_ptr<runtime::Engine> DeviceEngines::engine(int device) {
  std::lock_guard lock(mutex_);
  if (auto it = engines_.find(device); it != engines_.end()) return it->second;
  const ServingSettings& s = model_->config.settings;
  if (!cache_ && !s.runtime_cache_path.empty()) {
    cache_ = std::make_shared<runtime::RuntimeCache>(runtime::compiler_version());
    cache_warnings_ = cache_->load_file(s.runtime_cache_path);
  }
  runtime::RuntimeConfig config;
  config.device = device;
  config.cuda_graph_strategy = s.cuda_graph_strategy;
  config.dynamic_shapes_kernel_specialization_strategy = s.kernel_specialization;
  config.cache = cache_;
  // The dynamic batcher forms every batch size up to max_batch_size; a context
  // that forgot some of them would prepare and capture them again and again.
  config.shapes_per_context = std::max(config.shapes_per_context, size_t(model_->config.max_batch_size));
  check(cudaSetDevice(device), "cudaSetDevice", device);
  auto engine = runtime::Engine::create(*model_->plan, config);
  engines_[device] = engine;
  return engine;
}

std::vector<std::string> DeviceEngines::save_cache() {
  std::lock_guard lock(mutex_);
  if (!cache_ || !cache_->has_unsaved_entries()) return {};
  return cache_->save_file(model_->config.settings.runtime_cache_path).warnings;
}

}  // namespace kiln::serving
