#include "kiln/ir/network.h"

#include <algorithm>
#include <queue>

#include "kiln/error.h"
#include "kiln/ir/limits.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::ir {

int64_t TensorData::numel() const { return checked_numel(dims); }

std::string_view attr_type_name(AttrType type) {
  switch (type) {
    case AttrType::kInt: return "int";
    case AttrType::kFloat: return "float";
    case AttrType::kString: return "string";
    case AttrType::kInts: return "ints";
    case AttrType::kFloats: return "floats";
    case AttrType::kStrings: return "strings";
    case AttrType::kTensor: return "tensor";
    case AttrType::kGraph: return "graph";
  }
  return "?";
}

AttrType attr_type_of(const AttrValue& value) { return AttrType(value.index()); }

void Attributes::erase(std::string_view name) {
  auto it = values_.find(name);
  if (it != values_.end()) values_.erase(it);
}

const AttrValue* Attributes::find(std::string_view name, AttrType expected) const {
  auto it = values_.find(name);
  if (it == values_.end()) return nullptr;
  if (attr_type_of(it->second) != expected)
    fail(ErrorCode::kInvalidModel, "attribute '", name, "' is ", attr_type_name(attr_type_of(it->second)),
         "; expected ", attr_type_name(expected));
  return &it->second;
}

int64_t Attributes::get_int(std::string_view name, int64_t fallback) const {
  auto* v = find(name, AttrType::kInt);
  return v ? std::get<int64_t>(*v) : fallback;
}
double Attributes::get_float(std::string_view name, double fallback) const {
  auto* v = find(name, AttrType::kFloat);
  return v ? std::get<double>(*v) : fallback;
}
std::string Attributes::get_string(std::string_view name, const std::string& fallback) const {
  auto* v = find(name, AttrType::kString);
  return v ? std::get<std::string>(*v) : fallback;
}
std::vector<int64_t> Attributes::get_ints(std::string_view name, const std::vector<int64_t>& fallback) const {
  auto* v = find(name, AttrType::kInts);
  return v ? std::get<std::vector<int64_t>>(*v) : fallback;
}
std::vector<double> Attributes::get_floats(std::string_view name, const std::vector<double>& fallback) const {
  auto* v = find(name, AttrType::kFloats);
  return v ? std::get<std::vector<double>>(*v) : fallback;
}
std::vector<std::string> Attributes::get_strings(std::string_view name) const {
  auto* v = find(name, AttrType::kStrings);
  return v ? std::get<std::vector<std::string>>(*v) : std::vector<std::string>{};
}
const TensorData* Attributes::get_tensor(std::string_view name) const {
  auto* v = find(name, AttrType::kTensor);
  return v ? &std::get<TensorData>(*v) : nullptr;
}
const Network* Attributes::get_graph(std::string_view name) const {
  auto* v = find(name, AttrType::kGraph);
  return v ? std::get<Subgraph>(*v).get() : nullptr;
}

std::string Network::unique_name(const std::string& stem) {
  std::string name;
  do name = str(stem, "_", name_counter_++);
  while (value_by_name_.count(name));
  return name;
}

ValueId Network::new_value(const std::string& name) {
  std::string n = name.empty() ? unique_name("t") : name;
  if (value_by_name_.count(n)) fail(ErrorCode::kInvalidModel, "tensor name '", n, "' is defined twice");
  ValueId id = ValueId(values_.size());
  values_.push_back(Value{});
  values_.back().name = n;
  value_by_name_[n] = id;
  finalized_ = false;
  return id;
}

ValueId Network::add_input(const std::string& name, DType dtype, Shape shape) {
  ValueId id = new_value(name);
  Value& v = values_[size_t(id)];
  v.dtype = dtype;
  v.shape = std::move(shape);
  v.typed = true;
  v.is_input = true;
  inputs_.push_back(id);
  return id;
}

ValueId Network::add_weight(const std::string& name, TensorData weight) {
  if (is_string(weight.dtype)) {
    if (weight.strings.size() != uint64_t(weight.numel()) || weight.data.size() != 0)
      fail(ErrorCode::kInvalidModel, "string weight '", name, "' has ", weight.strings.size(), " strings (and ", weight.data.size(),
           " bytes); its dims need ", weight.numel(), " strings and no bytes");
  } else if (!weight.strings.empty()) {
    fail(ErrorCode::kInvalidModel, "weight '", name, "' of ", dtype_name(weight.dtype), " holds strings");
  }
  int64_t bytes = is_string(weight.dtype) ? 0 : checked_numel({weight.numel(), int64_t(dtype_size(weight.dtype))});  // no wrap
  if (weight.data.size() != size_t(bytes))
    fail(ErrorCode::kInvalidModel, "weight '", name, "' has ", weight.data.size(), " bytes; its dims and dtype need ", bytes);
  ValueId id = new_value(name);
  Value& v = values_[size_t(id)];
  v.dtype = weight.dtype;
  v.shape = shape_of(weight.dims);
  v.typed = true;
  v.weight = std::move(weight);
  return id;
}

ValueId Network::add_value(const std::string& name) { return new_value(name); }

NodeId Network::add_node(Node node) {
  if (node.name.empty()) node.name = str(op_name(node.op), "_", nodes_.size());
  NodeId id = NodeId(nodes_.size());
  for (ValueId v : node.inputs)
    if (v != kNoValue && (v < 0 || size_t(v) >= values_.size()))
      fail(ErrorCode::kInvalidModel, "node '", node.name, "' refers to an unknown tensor id ", v);
  for (ValueId v : node.outputs) {
    if (v == kNoValue) continue;
    if (v < 0 || size_t(v) >= values_.size())
      fail(ErrorCode::kInvalidModel, "node '", node.name, "' refers to an unknown tensor id ", v);
    Value& out = values_[size_t(v)];
    if (out.producer >= 0 || out.is_input || out.weight)
      fail(ErrorCode::kInvalidModel, "node '", node.name, "' writes tensor '", out.name, "', which ",
           out.is_input ? "is a graph input" : out.weight ? "is a weight" : "another node already writes");
    out.producer = id;
  }
  nodes_.push_back(std::move(node));
  finalized_ = false;
  return id;
}

std::vector<ValueId> Network::add_op(OpKind op, std::vector<ValueId> inputs, Attributes attrs, int num_outputs,
                                     const std::string& name) {
  Node node;
  node.op = op;
  node.name = name.empty() ? str(op_name(op), "_", nodes_.size()) : name;
  node.inputs = std::move(inputs);
  node.attrs = std::move(attrs);
  for (int i = 0; i < num_outputs; ++i) node.outputs.push_back(new_value(unique_name(node.name + "_out")));
  std::vector<ValueId> outputs = node.outputs;
  add_node(std::move(node));
  return outputs;
}

ValueId Network::add_op1(OpKind op, std::vector<ValueId> inputs, Attributes attrs, const std::string& name) {
  return add_op(op, std::move(inputs), std::move(attrs), 1, name).front();
}

void Network::add_output(ValueId value) {
  if (value < 0 || size_t(value) >= values_.size()) fail(ErrorCode::kInvalidModel, "unknown output tensor id ", value);
  outputs_.push_back(value);
  finalized_ = false;
}

void Network::set_dim_range(const std::string& symbol, DimRange range) {
  if (range.min < 0 || range.min > range.opt || range.opt > range.max)
    fail(ErrorCode::kInvalidArgument, "range for '", symbol, "' must satisfy 0 <= min <= opt <= max; got ", range.min,
         "/", range.opt, "/", range.max);
  dim_ranges_[symbol] = range;
}

std::optional<ValueId> Network::find_value(std::string_view name) const {
  auto it = value_by_name_.find(name);
  if (it == value_by_name_.end()) return std::nullopt;
  return it->second;
}

bool Network::size_depends_on_data(ValueId id) const {
  std::set<std::string> symbols;
  for (const Dim& d : value(id).shape) d.collect_symbols(symbols);
  return std::any_of(symbols.begin(), symbols.end(), [&](const std::string& s) { return data_dependent_.count(s) > 0; });
}

void Network::topological_sort() {
  // Kahn's algorithm over node->node edges, keeping the original order among ready nodes.
  size_t n = nodes_.size();
  std::vector<int> pending(n, 0);
  std::vector<std::vector<NodeId>> users(n);
  for (size_t i = 0; i < n; ++i)
    for (ValueId v : nodes_[i].inputs) {
      if (v == kNoValue) continue;
      const Value& value = values_[size_t(v)];
      if (value.producer < 0) {
        if (!value.is_input && !value.weight)
          fail(ErrorCode::kInvalidModel, "node '", nodes_[i].name, "' reads tensor '", value.name,
               "', which no node produces and which is neither a graph input nor a weight");
        continue;
      }
      pending[i]++;
      users[size_t(value.producer)].push_back(NodeId(i));
    }
  std::priority_queue<NodeId, std::vector<NodeId>, std::greater<>> ready;
  for (size_t i = 0; i < n; ++i)
    if (pending[i] == 0) ready.push(NodeId(i));
  std::vector<NodeId> order;
  while (!ready.empty()) {
    NodeId i = ready.top();
    ready.pop();
    order.push_back(i);
    for (NodeId u : users[size_t(i)])
      if (--pending[size_t(u)] == 0) ready.push(u);
  }
  if (order.size() != n) {
    for (size_t i = 0; i < n; ++i)
      if (pending[i] > 0) fail(ErrorCode::kInvalidModel, "the graph has a cycle through node '", nodes_[i].name, "'");
  }
  std::vector<Node> sorted;
  sorted.reserve(n);
  for (NodeId i : order) sorted.push_back(std::move(nodes_[size_t(i)]));
  nodes_ = std::move(sorted);
  for (size_t i = 0; i < n; ++i)
    for (ValueId v : nodes_[i].outputs)
      if (v != kNoValue) values_[size_t(v)].producer = NodeId(i);
}

namespace {
int64_t shape_work(const std::vector<Dim>& dims) {
  int64_t work = 1;
  for (const Dim& d : dims) work += d.complexity();
  return work;
}
}  // namespace

// Budgets bound the time and memory a small file can make inference spend:
// symbols made up, and the summed size of the inferred shapes.
void Network::infer_shapes() {
  int64_t fresh_counter = 0;
  int64_t work = 0, work_limit = std::min(kMaxInferenceWork, kInferenceWorkPerNode * int64_t(nodes_.size() + 1));
  data_dependent_.clear();
  const Node* current = nullptr;
  std::function<Dim()> fresh = [&] {
    if (fresh_counter >= kMaxSymbols)
      fail(ErrorCode::kUnsupported, "node '", current->name, "' (", op_name(current->op), "): shape inference made ",
           kMaxSymbols, " symbols for data-dependent sizes, the limit for one model");
    std::string name = str("_d", fresh_counter++);
    data_dependent_.insert(name);
    return Dim::symbol(name);
  };
  for (const Node& node : nodes_) {
    current = &node;
    std::vector<InferInput> in(node.inputs.size());
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      if (node.inputs[i] == kNoValue) continue;
      const Value& v = values_[size_t(node.inputs[i])];
      in[i] = InferInput{true, v.dtype, v.shape, v.known ? &*v.known : nullptr, v.weight ? &*v.weight : nullptr, &v.name};
    }
    std::vector<InferOutput> out;
    try {
      out = infer_node(node, in, fresh);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {  // a kiln bug, but never a crash for the caller
      fail(ErrorCode::kInternal, "node '", node.name, "' (", op_name(node.op), "): shape inference failed: ", e.what());
    }
    for (size_t i = 0; i < node.outputs.size(); ++i) {
      if (node.outputs[i] == kNoValue) continue;
      work += shape_work(out[i].shape) + (out[i].known ? shape_work(*out[i].known) : 0);
      if (work > work_limit)
        fail(ErrorCode::kUnsupported, "node '", node.name, "' (", op_name(node.op), "): shape inference passed its budget of ",
             work_limit, " (", kInferenceWorkPerNode, " per node, at most ", kMaxInferenceWork,
             "); the model's shape expressions are too large");
      Value& v = values_[size_t(node.outputs[i])];
      v.dtype = out[i].dtype;
      v.shape = std::move(out[i].shape);
      v.known = std::move(out[i].known);
      v.typed = true;
    }
  }
}

void Network::finalize() {
  if (outputs_.empty()) fail(ErrorCode::kInvalidModel, "the network has no outputs");
  for (ValueId id : inputs_) {
    const Value& v = values_[size_t(id)];
    if (int64_t(v.shape.size()) > kMaxRank)
      fail(ErrorCode::kUnsupported, "input '", v.name, "' has ", v.shape.size(), " dims, more than the limit of ", kMaxRank);
    for (const Dim& d : v.shape)
      if (d.is_constant() && d.constant() < 0) fail(ErrorCode::kInvalidModel, "input '", v.name, "' has negative dim ", d.constant());
    if (shape_is_constant(v.shape)) checked_byte_size(shape_constants(v.shape), v.dtype, str("input '", v.name, "'"));
  }
  for (const Value& v : values_)
    if (v.weight && int64_t(v.shape.size()) > kMaxRank)
      fail(ErrorCode::kUnsupported, "weight '", v.name, "' has ", v.shape.size(), " dims, more than the limit of ", kMaxRank);
  for (const Node& node : nodes_) check_node_schema(node);
  topological_sort();
  for (ValueId id : outputs_)
    if (values_[size_t(id)].producer < 0 && !values_[size_t(id)].is_input && !values_[size_t(id)].weight)
      fail(ErrorCode::kInvalidModel, "output '", values_[size_t(id)].name, "' is not produced by any node");
  infer_shapes();
  SymbolBindings at_max;
  for (auto& [symbol, range] : dim_ranges_) at_max[symbol] = range.max;
  check_value_sizes(*this, at_max);
  finalized_ = true;
}

void check_value_sizes(const Network& net, const SymbolBindings& bindings) {
  for (const Value& v : net.values()) {
    if (!v.typed) continue;
    std::optional<std::vector<int64_t>> dims;
    try {
      dims = evaluate_dims(v.shape, bindings);
    } catch (const Error& e) {
      fail(e.code(), "tensor '", v.name, "' ", shape_to_string(v.shape), ": ", e.what());
    }
    if (!dims) continue;  // a symbol without a value: checked when one is given
    std::string what = str("tensor '", v.name, "'");
    if (v.producer >= 0)
      what += str(" (output of node '", net.nodes()[size_t(v.producer)].name, "')");
    checked_byte_size(*dims, v.dtype, what);
  }
}

int64_t Network::parameter_count() const {
  int64_t n = 0;
  for (const Value& v : values_)
    if (v.weight) n += v.weight->numel();
  return n;
}

int64_t Network::parameter_bytes() const {
  int64_t n = 0;
  for (const Value& v : values_)
    if (v.weight) {
      n += int64_t(v.weight->data.size());
      for (const std::string& s : v.weight->strings) n += int64_t(s.size());  // a string weight's UTF-8 bytes
    }
  return n;
}

}  // namespace kiln::ir
