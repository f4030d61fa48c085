#include <algorithm>
#include <set>

#include "cuda_util.h"
#include "kiln/runtime.h"

namespace kiln::runtime {

struct DeviceIo::State {
  ExecutionContext* context;
  std::map<std::string, std::vector<int64_t>> input_dims;
  std::vector<std::pair<std::string, void*>> addresses;
  std::vector<DeviceBuffer> buffers;
  // String tensors have no device form: theirs are host arrays (a moved
  // vector keeps its elements where they were, so the bound addresses hold).
  std::vector<std::vector<std::string>> string_arrays;
  std::vector<ir::TensorData> outputs;  // dtype and dims; data filled by download()
  std::vector<size_t> output_buffer;    // per output: its index in buffers, or in string_arrays for a string output
  std::vector<std::string> output_names;  // per output: its name where its size depends on data, else empty
};

DeviceIo::DeviceIo(ExecutionContext& context, const Engine& engine, const std::map<std::string, ir::TensorData>& inputs)
    : state_(std::make_unique<State>()) {
  const ir::Network& net = engine.plan().network;
  State& s = *state_;
  s.context = &context;
  auto bind_strings = [&](const std::string& name) {  // the last host array of strings, as tensor `name`'s
    if (s.string_arrays.back().empty()) s.string_arrays.back().resize(1);  // an empty tensor needs an address too
    context.set_tensor_address(name, s.string_arrays.back().data());
    s.addresses.emplace_back(name, s.string_arrays.back().data());
  };
  DeviceScope on_device(engine.device());  // the buffers live with the engine
  for (ir::ValueId id : net.inputs()) {
    const ir::Value& v = net.value(id);
    auto it = inputs.find(v.name);
    if (it == inputs.end()) fail(ErrorCode::kInvalidArgument, "input '", v.name, "' is not given");
    if (it->second.dtype != v.dtype)
      fail(ErrorCode::kTypeError, "input '", v.name, "' must be ", dtype_name(v.dtype), "; got ", dtype_name(it->second.dtype));
    context.set_input_shape(v.name, it->second.dims);
    s.input_dims[v.name] = it->second.dims;
    if (is_string(v.dtype)) {
      if (int64_t(it->second.strings.size()) != it->second.numel())
        fail(ErrorCode::kInvalidArgument, "input '", v.name, "' has ", it->second.strings.size(), " strings; its dims need ",
             it->second.numel());
      s.string_arrays.push_back(it->second.strings);
      bind_strings(v.name);
      continue;
    }
    s.buffers.emplace_back(std::max<size_t>(it->second.data.size(), 256), "input " + v.name);
    copy_to_device(s.buffers.back().get(), it->second.data.data(), it->second.data.size(), "uploading input " + v.name);
    context.set_tensor_address(v.name, s.buffers.back().get());
    s.addresses.emplace_back(v.name, s.buffers.back().get());
  }
  for (ir::ValueId id : net.outputs()) {
    const ir::Value& v = net.value(id);
    ir::TensorData t;
    t.dtype = v.dtype;
    t.dims = context.max_tensor_shape(v.name);  // a data-dependent size at its bound; download gives the real one
    if (is_string(t.dtype)) {
      s.string_arrays.emplace_back(size_t(t.numel()));
      bind_strings(v.name);
      s.output_buffer.push_back(s.string_arrays.size() - 1);
    } else {
      size_t bytes = size_t(t.numel()) * dtype_size(t.dtype);
      s.buffers.emplace_back(std::max<size_t>(bytes, 256), "output " + v.name);
      fill_device(s.buffers.back().get(), 0xff, s.buffers.back().bytes(), "filling output " + v.name);
      context.set_tensor_address(v.name, s.buffers.back().get());
      s.addresses.emplace_back(v.name, s.buffers.back().get());
      s.output_buffer.push_back(s.buffers.size() - 1);
    }
    std::set<std::string> symbols;
    for (const ir::Dim& d : v.shape) d.collect_symbols(symbols);
    bool data = std::any_of(symbols.begin(), symbols.end(), [&](auto& x) { return net.data_dependent_symbols().count(x) > 0; });
    s.output_names.push_back(data ? v.name : "");
    s.outputs.push_back(std::move(t));
  }
}

DeviceIo::~DeviceIo() = default;

void DeviceIo::bind() {
  for (auto& [name, dims] : state_->input_dims) state_->context->set_input_shape(name, dims);
  for (auto& [name, address] : state_->addresses) state_->context->set_tensor_address(name, address);
}

std::vector<ir::TensorData> DeviceIo::download(cudaStream_t stream) {
  KILN_CUDA(cudaStreamSynchronize(stream), "running the network");
  std::vector<ir::TensorData> outputs = state_->outputs;
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (!state_->output_names[i].empty()) outputs[i].dims = state_->context->tensor_shape(state_->output_names[i]);
    if (is_string(outputs[i].dtype)) {  // written by the enqueue, on the host
      const std::vector<std::string>& written = state_->string_arrays[state_->output_buffer[i]];
      outputs[i].strings.assign(written.begin(), written.begin() + outputs[i].numel());
      continue;
    }
    size_t bytes = size_t(outputs[i].numel()) * dtype_size(outputs[i].dtype);
    std::vector<std::byte> host(bytes);
    copy_to_host(host.data(), state_->buffers[state_->output_buffer[i]].get(), bytes, "downloading an output");
    outputs[i].data = Buffer::from_bytes(std::move(host));
  }
  return outputs;
}

std::vector<ir::TensorData> run_with_host_tensors(ExecutionContext& context, const Engine& engine,
                                                  const std::map<std::string, ir::TensorData>& inputs, cudaStream_t stream) {
  DeviceIo io(context, engine, inputs);
  context.enqueue(stream);
  return io.download(stream);
}

}  // namespace kiln::runtime
