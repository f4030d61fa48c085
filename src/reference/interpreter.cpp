// Walks the network in topological order, checking inputs, inferring each
// node's output shapes from the real data and cross-checking the kernels.
#include <functional>
#include <map>
#include <optional>

#include "kernels.h"

namespace kiln::reference {

using ir::OpKind;

namespace {

// The op's kernel in its family's file; nullptr when that file has no case for it.
Kernel kernel_of(OpKind op) {
  switch (ir::family_of(op)) {
    case ir::OpFamily::kElementwise: return elementwise_kernel(op);
    case ir::OpFamily::kLinalg: return linalg_kernel(op);
    case ir::OpFamily::kConv: return conv_kernel(op);
    case ir::OpFamily::kPool: return pool_kernel(op);
    case ir::OpFamily::kNormalization: return normalization_kernel(op);
    case ir::OpFamily::kReduce: return reduce_kernel(op);
    case ir::OpFamily::kMovement: return movement_kernel(op);
    case ir::OpFamily::kGenerator: return generator_kernel(op);
    case ir::OpFamily::kVision: return vision_kernel(op);
    case ir::OpFamily::kRecurrent: return recurrent_kernel(op);
    case ir::OpFamily::kControlFlow: return control_flow_kernel(op);
    case ir::OpFamily::kText: return text_kernel(op);
    case ir::OpFamily::kMl: return ml_kernel(op);
  }
  return nullptr;
}

// Every op kind should have a kernel (tests/ops/op_registry_test.cpp checks).
Outputs dispatch(const KernelContext& c) {
  Kernel kernel = kernel_of(c.node.op);
  if (!kernel)
    c.error(ErrorCode::kInternal, "the reference interpreter has no kernel for this op (src/reference/",
            ir::family_name(ir::family_of(c.node.op)), ".cpp)");
  return kernel(c);
}

// Checks one input against its declared dtype and shape, binding symbols.
void bind_input(const ir::Network& net, const ir::Value& v, const Tensor& t, ir::SymbolBindings& bindings) {
  if (t.dtype != v.dtype)
    fail(ErrorCode::kTypeError, "input '", v.name, "' must be ", dtype_name(v.dtype), "; got ", dtype_name(t.dtype));
  if (t.dims.size() != v.shape.size())
    fail(ErrorCode::kShapeError, "input '", v.name, "' must have rank ", v.shape.size(), " ",
         ir::shape_to_string(v.shape), "; got ", ir::shape_to_string(ir::shape_of(t.dims)));
  if (is_string(t.dtype) ? t.strings.size() != size_t(t.numel()) : t.data.size() != size_t(t.numel()) * dtype_size(t.dtype))
    fail(ErrorCode::kInvalidArgument, "input '", v.name, "' has ",
         is_string(t.dtype) ? str(t.strings.size(), " strings") : str(t.data.size(), " bytes"), "; its dims need ",
         is_string(t.dtype) ? str(t.numel(), " strings") : str(size_t(t.numel()) * dtype_size(t.dtype), " bytes"));
  for (size_t i = 0; i < t.dims.size(); ++i) {
    const ir::Dim& d = v.shape[i];
    if (d.is_constant()) {
      if (d.constant() != t.dims[i])
        fail(ErrorCode::kShapeError, "input '", v.name, "' dim ", i, " must be ", d.constant(), "; got ", t.dims[i]);
      continue;
    }
    std::set<std::string> symbols;
    d.collect_symbols(symbols);
    if (symbols.size() != 1 || d != ir::Dim::symbol(*symbols.begin())) continue;  // derived dims are checked by inference
    const std::string& s = *symbols.begin();
    auto [it, inserted] = bindings.emplace(s, t.dims[i]);
    if (!inserted && it->second != t.dims[i])
      fail(ErrorCode::kShapeError, "input '", v.name, "' dim ", i, " ('", s, "') is ", t.dims[i],
           " but another input set '", s, "' to ", it->second);
    auto range = net.dim_ranges().find(s);
    if (range != net.dim_ranges().end() && (t.dims[i] < range->second.min || t.dims[i] > range->second.max))
      fail(ErrorCode::kShapeError, "input '", v.name, "' dim ", i, " ('", s, "') is ", t.dims[i], ", outside its range [",
           range->second.min, ", ", range->second.max, "]");
  }
}

}  // namespace

bool has_kernel(ir::OpKind op) { return kernel_of(op) != nullptr; }

std::vector<Tensor> run_node(const ir::Network& net, const ir::Node& node, const std::vector<const Tensor*>& inputs) {
  if (inputs.size() != node.inputs.size())
    fail(ErrorCode::kInternal, "node '", node.name, "' has ", node.inputs.size(), " inputs; ", inputs.size(), " were given");
  std::vector<ir::InferInput> infer_in(node.inputs.size());
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    if (node.inputs[i] == ir::kNoValue) continue;
    const Tensor& t = *inputs[i];
    infer_in[i] = ir::InferInput{true, t.dtype, ir::shape_of(t.dims), nullptr, &t, &net.value(node.inputs[i]).name};
  }
  int64_t fresh_counter = 0;
  std::function<ir::Dim()> fresh = [&] { return ir::Dim::symbol(str("_r", fresh_counter++)); };
  KernelContext ctx{node, inputs, ir::infer_node(node, infer_in, fresh)};
  Outputs out = dispatch(ctx);
  if (out.size() < node.outputs.size())
    fail(ErrorCode::kInternal, ctx.where(), ": kernel made ", out.size(), " outputs, expected ", node.outputs.size());
  for (size_t i = 0; i < node.outputs.size(); ++i) {
    if (node.outputs[i] == ir::kNoValue) continue;
    const ir::InferOutput& expect = ctx.outputs[i];
    if (out[i].dtype != expect.dtype ||
        (ir::shape_is_constant(expect.shape) && ir::shape_constants(expect.shape) != out[i].dims))
      fail(ErrorCode::kInternal, ctx.where(), ": output ", i, " is ", dtype_name(out[i].dtype),
           ir::shape_to_string(ir::shape_of(out[i].dims)), " but inference said ", dtype_name(expect.dtype),
           ir::shape_to_string(expect.shape));
  }
  return out;
}

namespace {

// Every value after the run: the outputs, and the tensors `keep` asks for
// (the other intermediates are freed after their last reader so large models fit).
// A subgraph's inputs are checked for their dtype only: its declared shapes
// may be narrower than what its node gives it (a loop-carried value that grows).
std::vector<std::optional<Tensor>> execute(const ir::Network& net, const std::map<std::string, Tensor>& inputs,
                                           const std::function<bool(const std::string&)>& keep, bool subgraph = false) {
  if (!net.finalized()) fail(ErrorCode::kInvalidArgument, "the network must be finalized before it runs");
  std::vector<std::optional<Tensor>> values(net.values().size());
  ir::SymbolBindings bindings;
  for (auto& [name, tensor] : inputs) {
    auto id = net.find_value(name);
    if (!id || !net.value(*id).is_input) {
      std::string names;
      for (ir::ValueId in : net.inputs()) names += (names.empty() ? "" : ", ") + net.value(in).name;
      fail(ErrorCode::kInvalidArgument, "'", name, "' is not an input of the network (inputs: ", names, ")");
    }
  }
  for (ir::ValueId id : net.inputs()) {
    const ir::Value& v = net.value(id);
    auto it = inputs.find(v.name);
    if (it == inputs.end()) fail(ErrorCode::kInvalidArgument, "input '", v.name, "' is not given");
    if (!subgraph) bind_input(net, v, it->second, bindings);
    else if (it->second.dtype != v.dtype)
      fail(ErrorCode::kTypeError, "input '", v.name, "' must be ", dtype_name(v.dtype), "; got ", dtype_name(it->second.dtype));
    values[size_t(id)] = it->second;
  }
  for (size_t i = 0; i < net.values().size(); ++i)
    if (net.values()[i].weight) values[i] = *net.values()[i].weight;

  // Free intermediates after their last reader so large models fit.
  std::vector<size_t> last_use(net.values().size(), SIZE_MAX);
  for (size_t n = 0; n < net.nodes().size(); ++n)
    for (ir::ValueId v : net.nodes()[n].inputs)
      if (v != ir::kNoValue) last_use[size_t(v)] = n;
  for (ir::ValueId v : net.outputs()) last_use[size_t(v)] = SIZE_MAX;
  if (keep)
    for (size_t v = 0; v < net.values().size(); ++v)
      if (keep(net.values()[v].name)) last_use[v] = SIZE_MAX;

  for (size_t n = 0; n < net.nodes().size(); ++n) {
    const ir::Node& node = net.nodes()[n];
    std::vector<const Tensor*> kernel_in(node.inputs.size(), nullptr);
    for (size_t i = 0; i < node.inputs.size(); ++i)
      if (node.inputs[i] != ir::kNoValue) kernel_in[i] = &*values[size_t(node.inputs[i])];
    Outputs out = run_node(net, node, kernel_in);
    for (size_t i = 0; i < node.outputs.size(); ++i)
      if (node.outputs[i] != ir::kNoValue) values[size_t(node.outputs[i])] = std::move(out[i]);
    for (ir::ValueId v : node.inputs)
      if (v != ir::kNoValue && last_use[size_t(v)] == n && !net.value(v).weight && !net.value(v).is_input)
        values[size_t(v)].reset();
  }
  return values;
}

}  // namespace

std::vector<Tensor> run_subgraph(const KernelContext& c, const char* attr, const std::vector<Tensor>& inputs) {
  const ir::Network* body = c.attrs().get_graph(attr);
  if (!body) c.error(ErrorCode::kInvalidModel, "graph attribute '", attr, "' is required");
  if (inputs.size() != body->inputs().size())
    c.error(ErrorCode::kInvalidModel, "subgraph '", attr, "' has ", body->inputs().size(), " inputs; the node gives it ", inputs.size());
  std::map<std::string, Tensor> named;
  for (size_t i = 0; i < inputs.size(); ++i) named[body->value(body->inputs()[i]).name] = inputs[i];
  std::vector<std::optional<Tensor>> values;
  try {
    values = execute(*body, named, {}, true);
  } catch (const Error& e) {
    c.error(e.code(), "in subgraph '", attr, "': ", e.what());
  }
  std::vector<Tensor> out;
  for (ir::ValueId id : body->outputs()) out.push_back(*values[size_t(id)]);
  return out;
}

std::vector<Tensor> run(const ir::Network& net, const std::map<std::string, Tensor>& inputs) {
  std::vector<std::optional<Tensor>> values = execute(net, inputs, {});
  std::vector<Tensor> result;
  for (ir::ValueId id : net.outputs()) result.push_back(*values[size_t(id)]);
  return result;
}

std::map<std::string, Tensor> run_every_tensor(const ir::Network& net, const std::map<std::string, Tensor>& inputs,
                                               const std::function<bool(const std::string&)>& keep) {
  std::vector<std::optional<Tensor>> values = execute(net, inputs, keep ? keep : [](const std::string&) { return true; });
  std::map<std::string, Tensor> out;
  for (const ir::Node& node : net.nodes())
    for (ir::ValueId v : node.outputs)
      if (v != ir::kNoValue && values[size_t(v)] && (!keep || keep(net.value(v).name)))
        out[net.value(v).name] = std::move(*values[size_t(v)]);
  return out;
}

}  // namespace kiln::reference
