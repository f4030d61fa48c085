// ExecutionContext::run_node_by_node: the launches of one shape, a node at a
// time, with the caller looking at each node's outputs before the arena
// reuses their memory (kiln debug --compare-layers).
#include <unordered_map>

#include "context_state.h"
#include "graphs/native_graph.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::runtime {

void ExecutionContext::run_node_by_node(cudaStream_t stream, const std::function<void(const NodeOutputs&)>& after_node) {
  ContextState& c = *state_;
  if (graphs::stream_is_capturing(stream))
    fail(ErrorCode::kInvalidArgument,
         "run_node_by_node: the stream is being captured; it waits for every node, which a capture forbids");
  DeviceScope on_device(c.engine->device);
  if (!c.current) c.current = &prepared_shape(c);
  const PreparedShape& shape = *c.current;
  resolve_pointers(c);
  const ir::Network& net = c.engine->plan.network;
  std::unordered_map<const ir::Node*, size_t> index;
  for (size_t n = 0; n < net.nodes().size(); ++n) index[&net.nodes()[n]] = n;

  size_t next = 0;  // the first node whose callback has not run
  // Calls back for nodes [next, end): their launches are all queued by now.
  auto finish_before = [&](size_t end) {
    if (next >= end) return;
    KILN_CUDA(cudaStreamSynchronize(stream), str("running node '", net.nodes()[end - 1].name, "'"));
    for (; next < end; ++next) {
      NodeOutputs done;
      done.node = next;
      for (ir::ValueId v : net.nodes()[next].outputs) {
        if (v == ir::kNoValue) continue;
        done.outputs.push_back({net.value(v).name, net.value(v).dtype, shape.shapes.dims[size_t(v)], c.pointers[size_t(v)]});
      }
      if (after_node) after_node(done);
    }
  };
  try {
    for (const Step& step : shape.steps) {
      const ir::Node* node = std::visit([](const auto& s) { return s.node; }, step);
      auto it = index.find(node);
      // Ops prepare their steps in node order; anything else would misattribute outputs.
      if (it == index.end() || it->second < next)
        fail(ErrorCode::kInternal, "run_node_by_node: a launch of node '", node ? node->name : "?", "' is out of node order");
      finish_before(it->second);
      launch_step(c, step, stream);
    }
    finish_before(net.nodes().size());
  } catch (...) {
    cudaStreamSynchronize(stream);  // nothing of ours stays queued behind the error
    throw;
  }
}

ir::TensorData read_node_output(const ExecutionContext::NodeOutput& output) {
  if (!output.address) fail(ErrorCode::kInvalidArgument, "tensor '", output.name, "' has no device storage to read");
  ir::TensorData t;
  t.dtype = output.dtype;
  t.dims = output.dims;
  std::vector<std::byte> host(size_t(ir::checked_numel(t.dims)) * dtype_size(t.dtype));
  if (!host.empty()) copy_to_host(host.data(), output.address, host.size(), "reading tensor '" + output.name + "'");
  t.data = Buffer::from_bytes(std::move(host));
  return t;
}

std::map<std::string, ir::TensorData> read_every_tensor(ExecutionContext& context, cudaStream_t stream,
                                                        const std::function<void(const ExecutionContext::NodeOutputs&)>& before_copy) {
  std::map<std::string, ir::TensorData> out;
  context.run_node_by_node(stream, [&](const ExecutionContext::NodeOutputs& node) {
    if (before_copy) before_copy(node);
    for (const auto& o : node.outputs)
      if (o.address) out[o.name] = read_node_output(o);
  });
  return out;
}

}  // namespace kiln::runtime
