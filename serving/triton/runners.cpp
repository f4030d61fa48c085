#include "runners.h"

#include <cuda_runtime_api.h>

#include "kiln/error.h"
#include "kiln/reference.h"

namespace kiln::serving {

namespace {

class ReferenceRunner : public Runner {
 public:
  explicit ReferenceRunner(std::shared_ptr<const ServedModel> model) : model_(std::move(model)) {}
  std::vector<ir::TensorData> run(const std::vector<ir::TensorData>& inputs) override {
    const ir::Network& net = model_->plan->network;
    std::map<std::string, ir::TensorData> named;
    for (size_t i = 0; i < inputs.size(); ++i) named[net.value(net.inputs()[i]).name] = inputs[i];
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

// Device memory that only grows, so a steady load reuses the same addresses
// (and the context's graphs replay without repair).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  void* reserve(size_t bytes, int device) {
    if (bytes <= capacity_ && ptr_) return ptr_;
    if (ptr_) check(cudaFree(ptr_), "cudaFree", device);
    ptr_ = nullptr;
    capacity_ = std::max<size_t>({bytes, 2 * capacity_, 256});
    check(cudaMalloc(&ptr_, capacity_), "cudaMalloc", device);
    return ptr_;
  }

 private:
  void* ptr_ = nullptr;
  size_t capacity_ = 0;
};

class GpuRunner : public Runner {
 public:
  GpuRunner(std::shared_ptr<runtime::Engine> engine, int device) : engine_(std::move(engine)), device_(device) {
    check(cudaSetDevice(device_), "cudaSetDevice", device_);
    context_ = engine_->create_context();
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags", device_);
    buffers_ = std::vector<DeviceBuffer>(size_t(context_->io_count()));
  }
  ~GpuRunner() override {
    if (stream_) {
      cudaSetDevice(device_);
      cudaStreamSynchronize(stream_);
      cudaStreamDestroy(stream_);
    }
  }

  std::vector<ir::TensorData> run(const std::vector<ir::TensorData>& inputs) override {
    // Triton runs each instance on a thread of its own; the device is per thread.
    check(cudaSetDevice(device_), "cudaSetDevice", device_);
    const ir::Network& net = engine_->plan().network;
    for (size_t i = 0; i < inputs.size(); ++i) {
      int io = int(i);  // inputs come first, in network order
      context_->set_input_shape(io, inputs[i].dims);
      void* device = buffers_[i].reserve(inputs[i].data.size(), device_);
      check(cudaMemcpyAsync(device, inputs[i].data.data(), inputs[i].data.size(), cudaMemcpyHostToDevice, stream_),
            "cudaMemcpyAsync (input)", device_);
      context_->set_tensor_address(io, device);
    }
    std::vector<ir::TensorData> outputs(net.outputs().size());
    std::vector<std::vector<std::byte>> host(outputs.size());
    for (size_t o = 0; o < outputs.size(); ++o) {
      int io = int(inputs.size() + o);
      outputs[o].dtype = net.value(net.outputs()[o]).dtype;
      outputs[o].dims = context_->tensor_shape(io);
      host[o].resize(size_t(ir::checked_numel(outputs[o].dims)) * dtype_size(outputs[o].dtype));
      context_->set_tensor_address(io, buffers_[inputs.size() + o].reserve(host[o].size(), device_));
    }
    context_->enqueue(stream_);
    for (size_t o = 0; o < outputs.size(); ++o)
      check(cudaMemcpyAsync(host[o].data(), buffers_[inputs.size() + o].reserve(host[o].size(), device_),
                            host[o].size(), cudaMemcpyDeviceToHost, stream_),
            "cudaMemcpyAsync (output)", device_);
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize", device_);
    for (size_t o = 0; o < outputs.size(); ++o) outputs[o].data = Buffer::from_bytes(std::move(host[o]));
    return outputs;
  }

  std::string summary() const override {
    runtime::ExecutionContext::GraphStats g = context_->graph_stats();
    std::string line = str("GPU ", device_, ": ", g.calls, " runs, ", g.direct, " direct, ", g.captures, " captures, ",
                           g.replays, " replays, ", g.pointer_repairs, " pointer repairs, ", g.kernel_swaps,
                           " kernel swaps");
    for (const auto& [reason, count] : g.fallbacks) line += str(", fallback '", reason, "' x", count);
    return line;
  }

 private:
  std::shared_ptr<runtime::Engine> engine_;
  int device_;
  std::unique_ptr<runtime::ExecutionContext> context_;
  cudaStream_t stream_ = nullptr;
  std::vector<DeviceBuffer> buffers_;  // per io index
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
