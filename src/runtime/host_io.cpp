#include <algorithm>

#include "cuda_util.h"
#include "kiln/runtime.h"

namespace kiln::runtime {

std::vector<ir::TensorData> run_with_host_tensors(ExecutionContext& context, const Engine& engine,
                                                  const std::map<std::string, ir::TensorData>& inputs, cudaStream_t stream) {
  const ir::Network& net = engine.plan().network;
  std::vector<DeviceBuffer> buffers;
  for (ir::ValueId id : net.inputs()) {
    const ir::Value& v = net.value(id);
    auto it = inputs.find(v.name);
    if (it == inputs.end()) fail(ErrorCode::kInvalidArgument, "input '", v.name, "' is not given");
    if (it->second.dtype != v.dtype)
      fail(ErrorCode::kTypeError, "input '", v.name, "' must be ", dtype_name(v.dtype), "; got ", dtype_name(it->second.dtype));
    context.set_input_shape(v.name, it->second.dims);
    buffers.emplace_back(std::max<size_t>(it->second.data.size(), 256), "input " + v.name);
    if (it->second.data.size())
      KILN_CUDA(cudaMemcpy(buffers.back().get(), it->second.data.data(), it->second.data.size(), cudaMemcpyHostToDevice), "");
    context.set_tensor_address(v.name, buffers.back().get());
  }
  std::vector<ir::TensorData> outputs;
  std::vector<size_t> output_buffer;
  for (ir::ValueId id : net.outputs()) {
    const ir::Value& v = net.value(id);
    ir::TensorData t;
    t.dtype = v.dtype;
    t.dims = context.tensor_shape(v.name);
    size_t bytes = size_t(t.numel()) * dtype_size(t.dtype);
    buffers.emplace_back(std::max<size_t>(bytes, 256), "output " + v.name);
    // Poison (all-ones bytes are NaN for floats) so an output the run forgets to write cannot pass as correct.
    KILN_CUDA(cudaMemset(buffers.back().get(), 0xff, buffers.back().bytes()), "");
    context.set_tensor_address(v.name, buffers.back().get());
    output_buffer.push_back(buffers.size() - 1);
    outputs.push_back(std::move(t));
  }
  context.enqueue(stream);
  KILN_CUDA(cudaStreamSynchronize(stream), "running the network");
  for (size_t i = 0; i < outputs.size(); ++i) {
    size_t bytes = size_t(outputs[i].numel()) * dtype_size(outputs[i].dtype);
    std::vector<std::byte> host(bytes);
    if (bytes) KILN_CUDA(cudaMemcpy(host.data(), buffers[output_buffer[i]].get(), bytes, cudaMemcpyDeviceToHost), "");
    outputs[i].data = Buffer::from_bytes(std::move(host));
  }
  return outputs;
}

}  // namespace kiln::runtime
