#include "runners.h"

#include <cuda_runtime_api.h>

#include <chrono>
#include <cstring>
#include <utility>

#include "kiln/error.h"
#include "kiln/reference.h"
#include "batching.h"

namespace kiln::serving {

namespace {

class ReferenceRunner : public Runner {
 public:
  explicit ReferenceRunner(std::shared_ptr<const ServedModel> model) : model_(std::move(model)) {}
  std::vector<ir::TensorData> run(const std::vector<StackedInput>& inputs) override {
    const ir::Network& net = model_->plan->network;
    std::map<std::string, ir::TensorData> named;
    for (size_t i = 0; i < inputs.size(); ++i) named[net.value(net.inputs()[i]).name] = concat_batch(inputs[i]);
    return reference::run(net, named);
  }

 private:
  std::shared_ptr<const ServedModel> model_;
};

void check(cudaError_t status, const char* call, int device) {
  if (status == cudaSuccess) return;
  cudaGetLastError();
  fail(ErrorCode::kDevice, call, " on GPU ", device, " failed: ", cudaGetErrorString(status));
}

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
  }
  ~GpuRunner() override {
    if (stream_) {
      cudaSetDevice(device_);
      cudaStreamSynchronize(stream_);
      cudaStreamDestroy(stream_);
    }
  }

  std::vector<ir::TensorData> run(const std::vector<StackedInput>& inputs) override {
    // Triton runs each instance on a thread of its own; the device is per thread.
    check(cudaSetDevice(device_), "cudaSetDevice", device_);
    Clock::time_point started = Clock::now();
    const ir::Network& net = engine_->plan().network;
    for (size_t i = 0; i < inputs.size(); ++i) {
      int io = int(i);  // inputs come first, in network order
      std::vector<int64_t> dims = inputs[i].front()->dims;
      size_t bytes = 0;
      for (const ir::TensorData* part : inputs[i]) bytes += part->data.size();
      if (inputs[i].size() > 1) {
        dims[0] = 0;
        for (const ir::TensorData* part : inputs[i]) dims[0] += part->dims[0];
      }
      std::byte* host = staging_[i].reserve(bytes, device_);
      for (const ir::TensorData* part : inputs[i]) {
        if (part->data.size()) std::memcpy(host, part->data.data(), part->data.size());
        host += part->data.size();
      }
      context_->set_input_shape(io, dims);
      void* device = device_buffers_[i].reserve(bytes, device_);
      check(cudaMemcpyAsync(device, host - bytes, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync (input)",
            device_);
      context_->set_tensor_address(io, device);
    }
    Clock::time_point gathered = Clock::now();
    inputs_ready_ns_ = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(gathered.time_since_epoch()).count());
    std::vector<ir::TensorData> outputs(net.outputs().size());
    std::vector<std::byte*> host(outputs.size());
    for (size_t o = 0; o < outputs.size(); ++o) {
      size_t io = inputs.size() + o;
      outputs[o].dtype = net.value(net.outputs()[o]).dtype;
      outputs[o].dims = context_->tensor_shape(int(io));
      size_t bytes = size_t(ir::checked_numel(outputs[o].dims)) * dtype_size(outputs[o].dtype);
      host[o] = staging_[io].reserve(bytes, device_);
      outputs[o].data = Buffer::borrow(host[o], bytes);
      context_->set_tensor_address(int(io), device_buffers_[io].reserve(bytes, device_));
    }
    context_->enqueue(stream_);
    for (size_t o = 0; o < outputs.size(); ++o) {
      size_t io = inputs.size() + o;
      check(cudaMemcpyAsync(host[o], device_buffers_[io].reserve(outputs[o].data.size(), device_),
                            outputs[o].data.size(), cudaMemcpyDeviceToHost, stream_),
            "cudaMemcpyAsync (output)", device_);
    }
    Clock::time_point enqueued = Clock::now();
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize", device_);
    Clock::time_point done = Clock::now();
    times_.runs += 1;
    times_.gather_us += micros(gathered - started);
    times_.enqueue_us += micros(enqueued - gathered);
    times_.wait_us += micros(done - enqueued);
    return outputs;
  }

  uint64_t inputs_ready_ns() const override { return inputs_ready_ns_; }

  std::string summary() const override {
    runtime::ExecutionContext::GraphStats g = context_->graph_stats();
    std::string line = str("GPU ", device_, ": ", g.calls, " runs, ", g.direct, " direct, ", g.captures, " captures, ",
                           g.replays, " replays, ", g.pointer_repairs, " pointer repairs, ", g.kernel_swaps,
                           " kernel swaps");
    for (const auto& [reason, count] : g.fallbacks) line += str(", fallback '", reason, "' x", count);
    if (times_.runs) {
      double n = double(times_.runs);
      line += str("; per run: gathering inputs ", times_.gather_us / n, " us, shapes, addresses, enqueue and copies ",
                  times_.enqueue_us / n, " us, waiting for the GPU ", times_.wait_us / n, " us");
    }
    return line;
  }

 private:
  struct Times {
    uint64_t runs = 0;
    double gather_us = 0, enqueue_us = 0, wait_us = 0;  // host time, summed over runs
  };
  std::shared_ptr<runtime::Engine> engine_;
  int device_;
  std::unique_ptr<runtime::ExecutionContext> context_;
  cudaStream_t stream_ = nullptr;
  std::vector<GrowingBuffer> device_buffers_;  // per io index
  std::vector<GrowingBuffer> staging_;         // per io index, pinned host memory
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
