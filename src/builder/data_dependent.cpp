// Upper bounds for data-dependent sizes (NonZero's count, a Range of data
// bounds, ...): each becomes the range of its symbol, in the network and in
// every profile, so the memory plan reserves the bound and the runtime checks
// every size it reads back against it.
#include <algorithm>
#include <set>

#include "graph.h"
#include "kiln/error.h"
#include "kiln/ir/control_flow.h"
#include "kiln/ir/limits.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::builder {

namespace {

// The bound that follows from the shapes at their largest, if one does: a
// NonZero finds at most every element of its input, TopK at most its axis,
// a reduction over axes the data gives keeps dims of its input (or 1s),
// Compress and Unique at most the slices along their axis, NonMaxSuppression
// at most every box of every batch and class, and a Reshape keeps its input's
// element count, unless that count may be 0: an empty tensor takes any dims
// with a 0 among them (ONNX's allowzero).
std::optional<int64_t> implied_bound(const ir::Network& net, const ir::Node& node, const ir::SymbolBindings& largest,
                                     const ir::SymbolBindings& smallest) {
  auto dims_of = [&](ir::ValueId v) { return ir::evaluate_dims(net.value(v).shape, largest); };
  switch (node.op) {
    case ir::OpKind::kReshape: {
      auto least = ir::evaluate_dims(net.value(node.inputs[0]).shape, smallest);
      if (!least || ir::checked_numel(*least) == 0) return std::nullopt;
      [[fallthrough]];
    }
    case ir::OpKind::kNonZero: {
      auto x = dims_of(node.inputs[0]);
      if (x) return ir::checked_numel(*x);
      return std::nullopt;
    }
    case ir::OpKind::kCompress: case ir::OpKind::kUnique: {
      // At most every slice along the axis (every element without one); Compress also at most its condition's length.
      auto x = dims_of(node.inputs[0]);
      if (!x) return std::nullopt;
      int64_t length = ir::checked_numel(*x);
      if (node.attrs.has("axis")) {
        int64_t axis = node.attrs.get_int("axis", 0);
        if (axis < 0) axis += int64_t(x->size());
        if (axis < 0 || axis >= int64_t(x->size())) return std::nullopt;
        length = (*x)[size_t(axis)];
      }
      if (node.op == ir::OpKind::kUnique) return length;
      auto condition = dims_of(node.inputs[1]);
      if (!condition || condition->size() != 1) return std::nullopt;
      return std::min(length, condition->front());
    }
    case ir::OpKind::kNonMaxSuppression: {
      // Each batch and class keeps at most its boxes, and at most max_output_boxes_per_class where that is a constant.
      auto boxes = dims_of(node.inputs[0]), scores = dims_of(node.inputs[1]);
      if (!boxes || !scores || boxes->size() != 3 || scores->size() != 3) return std::nullopt;
      int64_t per_class = (*boxes)[1];
      const ir::Value* most = node.inputs.size() > 2 && node.inputs[2] != ir::kNoValue ? &net.value(node.inputs[2]) : nullptr;
      if (most && most->weight) {
        std::vector<int64_t> v = ir::read_ints(*most->weight);
        per_class = std::min(per_class, v.empty() ? 0 : std::max<int64_t>(v.front(), 0));
      }
      return ir::checked_numel({(*boxes)[0], (*scores)[1], per_class});
    }
    case ir::OpKind::kTopK: {
      auto x = dims_of(node.inputs[0]);
      if (!x || x->empty()) return std::nullopt;
      int64_t axis = node.attrs.get_int("axis", -1);
      if (axis < 0) axis += int64_t(x->size());
      if (axis < 0 || axis >= int64_t(x->size())) return std::nullopt;
      return (*x)[size_t(axis)];
    }
    case ir::OpKind::kReduceMean: case ir::OpKind::kReduceSum: case ir::OpKind::kReduceMax: case ir::OpKind::kReduceMin:
    case ir::OpKind::kReduceProd: case ir::OpKind::kReduceL1: case ir::OpKind::kReduceL2: case ir::OpKind::kReduceLogSum:
    case ir::OpKind::kReduceLogSumExp: case ir::OpKind::kReduceSumSquare: {
      auto x = dims_of(node.inputs[0]);
      if (!x) return std::nullopt;
      return x->empty() ? 1 : *std::max_element(x->begin(), x->end());
    }
    default: return std::nullopt;
  }
}

// Control flow: a Loop's scan outputs have at most M slices where M is a
// constant or follows from the shapes; an If's output dim is at most the
// larger of its branches' dims.
std::optional<int64_t> implied_control_flow_bound(const ir::Network& net, const ir::Node& node, size_t output, size_t dim,
                                                  const ir::SymbolBindings& largest) {
  if (node.op == ir::OpKind::kLoop) {
    if (node.inputs[0] == ir::kNoValue || output < ir::loop_layout(node).carried || dim != 0) return std::nullopt;
    const ir::Value& trips = net.value(node.inputs[0]);
    std::optional<int64_t> m;
    if (trips.weight) m = ir::read_ints(*trips.weight).at(0);
    else if (trips.known && trips.known->size() == 1) m = trips.known->front().evaluate(largest);
    if (!m) return std::nullopt;
    return std::max<int64_t>(*m, 0);
  }
  if (node.op != ir::OpKind::kIf) return std::nullopt;
  std::vector<ir::InferInput> in;
  for (size_t i = 1; i < node.inputs.size(); ++i) {
    const ir::Value& v = net.value(node.inputs[i]);
    in.push_back(ir::InferInput{true, v.dtype, v.shape, v.known ? &*v.known : nullptr, v.weight ? &*v.weight : nullptr, &v.name});
  }
  int64_t unknown = 0, most = 0;
  for (const char* branch : {"then_branch", "else_branch"}) {
    // A size the branch makes up stays unbound, and so gives no bound.
    std::vector<ir::InferOutput> out =
        ir::infer_subgraph(*node.attrs.get_graph(branch), in, [&] { return ir::Dim::symbol(str("_unbounded", unknown++)); });
    if (output >= out.size() || dim >= out[output].shape.size()) return std::nullopt;
    auto size = out[output].shape[dim].evaluate(largest);
    if (!size) return std::nullopt;
    most = std::max(most, *size);
  }
  return most;
}

std::string symbols_text(const std::set<std::string>& symbols) {
  std::string out;
  for (const std::string& s : symbols) out += (out.empty() ? "'" : ", '") + s + "'";
  return out;
}

}  // namespace

// Whether a subgraph of `net` (at any depth) has a tensor of this name: its
// bound goes to that subgraph's build (build_subgraphs).
bool subgraph_tensor(const ir::Network& net, std::string_view name) {
  for (const ir::Node& node : net.nodes())
    for (auto& [attr, value] : node.attrs.all())
      if (auto* g = std::get_if<ir::Subgraph>(&value); g && *g && ((*g)->find_value(name) || subgraph_tensor(**g, name)))
        return true;
  return false;
}

void bound_data_dependent_sizes(plan::Plan& p, const std::map<std::string, int64_t, std::less<>>& given, int64_t fallback) {
  ir::Network& net = p.network;
  const std::set<std::string>& data = net.data_dependent_symbols();
  ir::SymbolBindings largest, smallest;
  for (auto& [s, r] : net.dim_ranges()) {
    largest[s] = r.max;
    smallest[s] = r.min;
  }
  std::set<std::string> used;  // names of `given` that bounded something
  for (const ir::Node& node : net.nodes())
    for (size_t o = 0; o < node.outputs.size(); ++o) {
      ir::ValueId v = node.outputs[o];
      if (v == ir::kNoValue) continue;
      const ir::Value& val = net.value(v);
      auto it = given.find(val.name);
      for (size_t i = 0; i < val.shape.size(); ++i) {
        std::set<std::string> symbols, fresh;
        val.shape[i].collect_symbols(symbols);
        for (const std::string& s : symbols)
          if (data.count(s) && !largest.count(s)) fresh.insert(s);
        if (fresh.empty()) continue;
        std::string where = str("tensor '", val.name, "' (node '", node.name, "', ", ir::op_name(node.op), ") dim ", i, " (",
                                val.shape[i].to_string(), ")");
        if (fresh.size() != 1 || val.shape[i] != ir::Dim::symbol(*fresh.begin()))
          fail(ErrorCode::kUnsupported, where, " depends on input data through an expression of ", symbols_text(fresh),
               ", which the GPU runtime cannot solve for when it reads values back; kiln needs such a size as a dim of its own");
        std::optional<int64_t> bound;
        if (it != given.end()) bound = it->second;
        else if (ir::family_of(node.op) == ir::OpFamily::kControlFlow) bound = implied_control_flow_bound(net, node, o, i, largest);
        else bound = implied_bound(net, node, largest, smallest);
        if (!bound && fallback >= 0) bound = fallback;
        if (!bound)
          fail(ErrorCode::kUnsupported, where, " depends on input data and no bound follows from the input shapes; give it one "
               "with --data-dependent-bound ", val.name, "=N (BuildOptions::data_dependent_bounds), N the largest size it may take");
        if (*bound < 0 || *bound > plan::kMaxRangeValue)
          fail(ErrorCode::kInvalidArgument, where, ": the bound ", *bound, " is outside [0, ", plan::kMaxRangeValue, "]");
        if (it != given.end()) used.insert(val.name);
        const std::string& s = *fresh.begin();
        largest[s] = *bound;
        smallest[s] = 0;
        ir::DimRange range{0, *bound, *bound};
        net.set_dim_range(s, range);
        for (ir::DimRanges& profile : p.profiles) profile[s] = range;
      }
    }
  for (auto& [name, bound] : given) {
    if (used.count(name)) continue;
    auto id = net.find_value(name);
    if (!id && subgraph_tensor(net, name)) continue;
    fail(ErrorCode::kInvalidArgument, "--data-dependent-bound names '", name, "', ",
         !id ? std::string("which is not a tensor of the built network")
             : "whose size does not depend on input data by itself (bound the tensor whose size it takes, such as a NonZero's or "
               "a Range's output)");
  }
  // Every size is known at its largest now: the tensors must fit a GPU there.
  ir::check_value_sizes(net, largest);
}

}  // namespace kiln::builder
