// Host steps: nodes on string tensors inside a GPU engine. String tensors
// have no device form, so enqueue runs such a node's CPU reference kernel on
// the host, as a stage boundary of the staged enqueue (readback.cpp): it
// waits for the stream, copies the node's numeric inputs into pinned memory
// the context made, runs the kernel, and queues the copies of its numeric
// outputs back into device memory. String tensors the network keeps inside
// live in the context (ContextState::strings); those of its inputs and
// outputs are the caller's std::string arrays.
#include <algorithm>

#include "context_state.h"
#include "kiln/error.h"
#include "kiln/reference.h"

namespace kiln::runtime {

namespace {

constexpr size_t kStagingAlignment = 256;

size_t aligned(size_t bytes) { return (bytes + kStagingAlignment - 1) / kStagingAlignment * kStagingAlignment; }

// The tensors of a host step that pass through the staging memory: numeric
// ones the device holds (weights are read from the plan, on the host).
bool staged(const ir::Value& v) { return !is_string(v.dtype) && !v.weight; }

std::string describe(const ir::Node& node) { return str("node '", node.name, "' (", ir::op_name(node.op), ")"); }

// The elements of string tensor `v`: the caller's array for a network input
// or output, else the context's.
std::string* string_elements(ContextState& c, ir::ValueId v) {
  if (c.io[size_t(v)]) return static_cast<std::string*>(c.pointers[size_t(v)]);
  return c.strings[size_t(v)].data();
}

}  // namespace

size_t host_staging_bytes(const plan::Plan& plan, const std::vector<size_t>& host_steps) {
  const ir::Network& net = plan.network;
  ir::SymbolBindings largest;
  for (auto& [s, r] : net.dim_ranges()) largest[s] = r.max;
  auto bytes_of = [&](const std::vector<ir::ValueId>& values) {
    size_t total = 0;
    for (ir::ValueId v : values)
      if (v != ir::kNoValue && staged(net.value(v)))
        total += aligned(size_t(ir::checked_numel(dims_at(plan, v, largest))) * dtype_size(net.value(v).dtype));
    return total;
  };
  size_t most = 0;
  for (size_t n : host_steps) most = std::max({most, bytes_of(net.nodes()[n].inputs), bytes_of(net.nodes()[n].outputs)});
  return most;
}

void run_host_step(ContextState& c, size_t n, cudaStream_t stream, const ShapeEnv& env, ir::SymbolBindings& resolved) {
  const EngineState& e = *c.engine;
  const ir::Network& net = e.plan.network;
  const ir::Node& node = net.nodes()[n];
  // The last step's uploads read the staging memory: they may still run on another stream.
  if (c.staging_pending) {
    KILN_CUDA(cudaEventSynchronize(c.staging_uploaded), str("waiting for the outputs of a host step before ", describe(node)));
    c.staging_pending = false;
  }
  std::byte* staging = c.host_staging.get();
  std::vector<ir::TensorData> held(node.inputs.size());
  std::vector<const ir::TensorData*> inputs(node.inputs.size(), nullptr);
  std::vector<size_t> at(node.inputs.size(), 0);
  size_t offset = 0;
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    ir::ValueId v = node.inputs[i];
    if (v == ir::kNoValue) continue;
    const ir::Value& val = net.value(v);
    if (val.weight) {
      inputs[i] = &*val.weight;
      continue;
    }
    if (env.pending[size_t(v)])
      fail(ErrorCode::kInternal, describe(node), ": input ", i, " ('", val.name, "') is not sized when the node runs");
    held[i].dtype = val.dtype;
    held[i].dims = env.of(v);
    inputs[i] = &held[i];
    size_t count = size_t(ir::checked_numel(held[i].dims));
    if (is_string(val.dtype)) {
      const std::string* elements = string_elements(c, v);
      if (count > 0 && !c.io[size_t(v)] && c.strings[size_t(v)].size() != count)
        fail(ErrorCode::kInternal, describe(node), ": string tensor '", val.name, "' holds ", c.strings[size_t(v)].size(),
             " elements; its dims need ", count);
      held[i].strings.assign(elements, elements + count);
      continue;
    }
    size_t bytes = count * dtype_size(val.dtype);
    if (bytes && !c.pointers[size_t(v)])
      fail(ErrorCode::kUnsupported, describe(node), ": input ", i, " ('", val.name, "') has no storage of its own (a view) to "
           "copy to the host");
    if (offset + bytes > e.host_staging_bytes)
      fail(ErrorCode::kInternal, describe(node), ": the staging memory of host steps is too small for input ", i);
    if (bytes)
      KILN_CUDA(cudaMemcpyAsync(staging + offset, c.pointers[size_t(v)], bytes, cudaMemcpyDeviceToHost, stream),
                str("copying input ", i, " ('", val.name, "') of ", describe(node), " to the host"));
    at[i] = offset;
    offset += aligned(bytes);
  }
  KILN_CUDA(cudaStreamSynchronize(stream), str("waiting for the inputs of ", describe(node), ", which runs on the host"));
  for (size_t i = 0; i < node.inputs.size(); ++i)
    if (node.inputs[i] != ir::kNoValue && staged(net.value(node.inputs[i])))
      held[i].data = Buffer::copy_of(staging + at[i], size_t(held[i].numel()) * dtype_size(held[i].dtype));

  std::vector<ir::TensorData> outputs = reference::run_node(net, node, inputs);

  offset = 0;
  bool uploads = false;
  for (size_t o = 0; o < node.outputs.size(); ++o) {
    ir::ValueId v = node.outputs[o];
    if (v == ir::kNoValue) continue;
    const ir::Value& val = net.value(v);
    ir::TensorData& t = outputs[o];
    // Sizes the plan leaves to data are bound (within their bounds); the others must be what the plan planned.
    for (size_t d = 0; d < t.dims.size() && d < val.shape.size(); ++d)
      if (auto s = unbound_symbol(net, v, d, resolved)) bind_size(e.plan, node, v, *s, t.dims[d], resolved);
    if (!env.pending[size_t(v)] && env.of(v) != t.dims)
      fail(ErrorCode::kShapeError, describe(node), ": output ", o, " ('", val.name, "') is ",
           ir::shape_to_string(ir::shape_of(t.dims)), "; the plan sized it ", ir::shape_to_string(ir::shape_of(env.of(v))));
    if (is_string(val.dtype)) {
      if (c.io[size_t(v)]) std::move(t.strings.begin(), t.strings.end(), string_elements(c, v));
      else c.strings[size_t(v)] = std::move(t.strings);
      continue;
    }
    size_t bytes = t.data.size();
    if (offset + bytes > e.host_staging_bytes)
      fail(ErrorCode::kInternal, describe(node), ": the staging memory of host steps is too small for output ", o);
    if (!bytes) continue;
    std::copy_n(t.data.data(), bytes, staging + offset);
    KILN_CUDA(cudaMemcpyAsync(c.pointers[size_t(v)], staging + offset, bytes, cudaMemcpyHostToDevice, stream),
              str("copying output ", o, " ('", val.name, "') of ", describe(node), " to the device"));
    offset += aligned(bytes);
    uploads = true;
  }
  if (uploads) {
    KILN_CUDA(cudaEventRecord(c.staging_uploaded, stream), str("recording the uploads of ", describe(node)));
    c.staging_pending = true;
  }
}

}  // namespace kiln::runtime
