// Control flow decided at build time: an If whose condition is a constant
// (after constant folding and shape inference: exporters write If on shape
// comparisons) becomes its branch's nodes, and a Loop or Scan whose iteration
// count is a constant becomes copies of its body, one per iteration, so the
// GPU runs such models with ordinary kernels inside CUDA graphs. What is left
// runs from enqueue (runtime/ops/control_flow.cpp): each subgraph is built
// here like a network of its own, for the shapes its node gives it.
#include <algorithm>
#include <set>

#include "graph.h"
#include "kiln/error.h"
#include "kiln/ir/control_flow.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"

namespace kiln::builder {

using ir::OpKind;

namespace {

// Each iteration copies the body into the plan: past 64 the plan and its build
// grow with the trip count for little gain (the launches stay as many), and a
// longer loop is left to the CPU device. The body copies of one node are bounded too.
constexpr int64_t kMaxUnrolledIterations = 64;
constexpr int64_t kMaxUnrolledNodes = int64_t(1) << 14;

bool constant_truth(const Graph& g, ir::ValueId v, bool& truth) {
  const ir::TensorData* w = g.weight_of(v);
  if (!w || w->numel() != 1) return false;
  truth = ir::read_ints(*w).at(0) != 0;
  return true;
}

// Copies of subgraphs spliced into the graph where their node was.
class Splicer {
 public:
  Splicer(Graph& g, const ir::Node& node) : g_(g), node_(node) {}

  // Adds a copy of `body` reading `inputs` (one per body input); returns the values of its outputs.
  std::vector<ir::ValueId> instantiate(const ir::Network& body, const std::vector<ir::ValueId>& inputs, const std::string& prefix) {
    std::vector<ir::ValueId> map(body.values().size(), ir::kNoValue);
    for (size_t i = 0; i < body.inputs().size(); ++i) map[size_t(body.inputs()[i])] = inputs.at(i);
    for (size_t v = 0; v < body.values().size(); ++v) {
      if (map[v] != ir::kNoValue) continue;
      const ir::Value& value = body.values()[v];
      map[v] = value.weight ? g_.add_weight(prefix + value.name, *value.weight) : g_.add_value(prefix + value.name);
    }
    for (const ir::Node& inner : body.nodes()) {
      ir::Node copy = inner;
      copy.name = prefix + inner.name;
      for (auto& v : copy.inputs) v = v == ir::kNoValue ? v : map[size_t(v)];
      for (auto& v : copy.outputs) v = v == ir::kNoValue ? v : map[size_t(v)];
      nodes_.push_back(std::move(copy));
    }
    std::vector<ir::ValueId> out;
    for (ir::ValueId v : body.outputs()) out.push_back(map[size_t(v)]);
    return out;
  }

  ir::ValueId scalar(const std::string& stem, int64_t value) {
    return g_.add_weight(node_.name + "/" + stem, reference::make_tensor(DType::kInt64, {}, {double(value)}));
  }

  // A node of the replacement writing `output` (a new value when kNoValue).
  ir::ValueId add(OpKind op, std::vector<ir::ValueId> inputs, ir::Attributes attrs, const std::string& stem,
                  ir::ValueId output = ir::kNoValue) {
    if (output == ir::kNoValue) output = g_.add_value(node_.name + "/" + stem);
    nodes_.push_back(ir::Node{g_.unique_name(node_.name + "/" + stem), op, std::move(inputs), {output}, std::move(attrs)});
    return output;
  }

  // The node's output `output` becomes `value` (an Identity keeps the output's name).
  void bind(ir::ValueId output, ir::ValueId value) {
    if (output != ir::kNoValue) add(OpKind::kIdentity, {value}, {}, "out", output);
  }

  // The node's output `output` stacks `slices` along a new dim `axis`.
  void stack(ir::ValueId output, const std::vector<ir::ValueId>& slices, int64_t axis) {
    if (output == ir::kNoValue) return;
    ir::ValueId axes = g_.add_ints(node_.name + "/axes", {axis});
    std::vector<ir::ValueId> parts;
    for (ir::ValueId s : slices)
      parts.push_back(add(OpKind::kUnsqueeze, {s, axes}, {}, "slice", slices.size() == 1 ? output : ir::kNoValue));
    if (slices.size() == 1) return;
    ir::Attributes concat;
    concat.set("axis", axis);
    add(OpKind::kConcat, parts, concat, "stack", output);
  }

  std::vector<ir::Node>& nodes() { return nodes_; }

 private:
  Graph& g_;
  const ir::Node& node_;
  std::vector<ir::Node> nodes_;
};

bool small_enough(const ir::Network& body, int64_t iterations) {
  return iterations <= kMaxUnrolledIterations && iterations * int64_t(body.nodes().size() + 1) <= kMaxUnrolledNodes;
}

bool inline_if(Graph& g, const ir::Node& node, Splicer& s) {
  bool taken;
  if (!constant_truth(g, node.inputs[0], taken)) return false;
  const char* branch = taken ? "then_branch" : "else_branch";
  std::vector<ir::ValueId> captured(node.inputs.begin() + 1, node.inputs.end());
  std::vector<ir::ValueId> out = s.instantiate(*node.attrs.get_graph(branch), captured, node.name + "/" + branch + "/");
  for (size_t i = 0; i < node.outputs.size(); ++i) s.bind(node.outputs[i], out[i]);
  return true;
}

bool unroll_loop(Graph& g, const ir::Node& node, Splicer& s) {
  const ir::Network& body = *node.attrs.get_graph("body");
  ir::LoopLayout l = ir::loop_layout(node);
  const ir::TensorData* m = g.weight_of(node.inputs[0]);
  if (!m) return false;
  int64_t trips = std::max<int64_t>(ir::read_ints(*m).at(0), 0);
  bool has_cond = node.inputs[1] != ir::kNoValue, go_on = true;
  if (has_cond) {
    // With a condition the body decides when to stop: unrolled only where it never stops early
    // (its condition output is its condition input or a true constant).
    if (!constant_truth(g, node.inputs[1], go_on)) return false;
    ir::ValueId cond_out = body.outputs()[0];
    bool stays_true = cond_out == body.inputs()[1] ||
                      (body.value(cond_out).weight && ir::read_ints(*body.value(cond_out).weight).at(0) != 0);
    if (go_on && !stays_true) return false;
  }
  if (!go_on) trips = 0;
  if (!small_enough(body, trips) || (trips == 0 && l.scan_outputs > 0)) return false;  // an empty scan output has no slice to take its dims from
  std::vector<ir::ValueId> carried(node.inputs.begin() + 2, node.inputs.begin() + 2 + ptrdiff_t(l.carried));
  std::vector<ir::ValueId> captured(node.inputs.begin() + 2 + ptrdiff_t(l.carried), node.inputs.end());
  std::vector<std::vector<ir::ValueId>> slices(l.scan_outputs);
  for (int64_t i = 0; i < trips; ++i) {
    std::vector<ir::ValueId> in{s.scalar(str("iteration", i), i), g.add_weight(node.name + "/cond", reference::make_tensor(DType::kBool, {}, {1}))};
    in.insert(in.end(), carried.begin(), carried.end());
    in.insert(in.end(), captured.begin(), captured.end());
    std::vector<ir::ValueId> out = s.instantiate(body, in, str(node.name, "/", i, "/"));
    for (size_t k = 0; k < l.carried; ++k) carried[k] = out[1 + k];
    for (size_t k = 0; k < l.scan_outputs; ++k) slices[k].push_back(out[1 + l.carried + k]);
  }
  for (size_t k = 0; k < l.carried; ++k) s.bind(node.outputs[k], carried[k]);
  for (size_t k = 0; k < l.scan_outputs; ++k) s.stack(node.outputs[l.carried + k], slices[k], 0);
  return true;
}

bool unroll_scan(Graph& g, const ir::Node& node, Splicer& s) {
  const ir::Network& body = *node.attrs.get_graph("body");
  ir::ScanLayout l = ir::scan_layout(node);
  if (l.batched) return false;
  std::vector<int64_t> axes;
  int64_t length = -1;
  for (size_t j = 0; j < l.scan_inputs; ++j) {
    const ir::Shape& shape = g.values[size_t(node.inputs[l.states + j])].shape;
    int64_t rank = int64_t(shape.size()), axis = l.input_axes[j] < 0 ? l.input_axes[j] + rank : l.input_axes[j];
    if (axis < 0 || axis >= rank || !shape[size_t(axis)].is_constant()) return false;
    axes.push_back(axis);
    length = shape[size_t(axis)].constant();
  }
  if (length <= 0 || !small_enough(body, length)) return false;  // an empty scan output has no slice to take its dims from
  std::vector<ir::ValueId> states(node.inputs.begin(), node.inputs.begin() + ptrdiff_t(l.states));
  std::vector<ir::ValueId> captured(node.inputs.begin() + ptrdiff_t(l.states + l.scan_inputs), node.inputs.end());
  std::vector<std::vector<ir::ValueId>> slices(l.scan_outputs);
  for (int64_t t = 0; t < length; ++t) {
    std::vector<ir::ValueId> in = states;
    for (size_t j = 0; j < l.scan_inputs; ++j) {
      ir::Attributes gather;
      gather.set("axis", axes[j]);
      int64_t step = l.input_reverse[j] ? length - 1 - t : t;
      in.push_back(s.add(OpKind::kGather, {node.inputs[l.states + j], s.scalar(str("step", step), step)}, gather, str("step", t)));
    }
    in.insert(in.end(), captured.begin(), captured.end());
    std::vector<ir::ValueId> out = s.instantiate(body, in, str(node.name, "/", t, "/"));
    for (size_t k = 0; k < l.states; ++k) states[k] = out[k];
    for (size_t k = 0; k < l.scan_outputs; ++k) slices[k].push_back(out[l.states + k]);
  }
  for (size_t k = 0; k < l.states; ++k) s.bind(node.outputs[k], states[k]);
  for (size_t k = 0; k < l.scan_outputs; ++k) {
    if (l.output_reverse[k]) std::reverse(slices[k].begin(), slices[k].end());
    ir::ValueId output = node.outputs[l.states + k];
    if (output == ir::kNoValue) continue;
    int64_t rank = int64_t(g.values[size_t(output)].shape.size());
    int64_t axis = l.output_axes[k] < 0 ? l.output_axes[k] + rank : l.output_axes[k];
    s.stack(output, slices[k], axis);
  }
  return true;
}

}  // namespace

int inline_control_flow(Graph& g) {
  std::vector<ir::Node> nodes;
  std::vector<bool> dead;
  int changed = 0;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    ir::Node node = g.nodes[n];
    bool expanded = false;
    std::vector<ir::Node> replacement;
    if (!g.dead[n] && ir::family_of(node.op) == ir::OpFamily::kControlFlow) {
      Splicer s(g, node);
      expanded = node.op == OpKind::kIf     ? inline_if(g, node, s)
                 : node.op == OpKind::kLoop ? unroll_loop(g, node, s)
                                            : unroll_scan(g, node, s);
      if (expanded) replacement = std::move(s.nodes());
    }
    if (!expanded) {
      nodes.push_back(std::move(node));
      dead.push_back(g.dead[n]);
      continue;
    }
    for (ir::Node& r : replacement) {
      nodes.push_back(std::move(r));
      dead.push_back(false);
    }
    ++changed;
  }
  g.nodes = std::move(nodes);
  g.dead = std::move(dead);
  return changed;
}

int scan_axes_to_front(Graph& g) {
  int changed = 0;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n] || g.nodes[n].op != OpKind::kScan) continue;
    ir::ScanLayout l = ir::scan_layout(g.nodes[n]);
    if (l.batched) continue;
    auto normalized = [](int64_t axis, size_t rank) { return axis < 0 ? axis + int64_t(rank) : axis; };
    bool moved = false;
    for (size_t j = 0; j < l.scan_inputs; ++j) {
      ir::ValueId in = g.nodes[n].inputs[l.states + j];
      size_t rank = g.values[size_t(in)].shape.size();
      int64_t axis = normalized(l.input_axes[j], rank);
      if (axis <= 0 || axis >= int64_t(rank)) continue;  // inference names an axis out of range
      std::vector<int64_t> perm{axis};
      for (int64_t d = 0; d < int64_t(rank); ++d)
        if (d != axis) perm.push_back(d);
      std::string stem = g.nodes[n].name + "/scan_input";
      ir::ValueId front = g.add_value(stem);
      ir::Attributes a;
      a.set("perm", perm);
      g.insert_node(n++, ir::Node{g.unique_name(stem), OpKind::kTranspose, {in}, {front}, std::move(a)});
      g.nodes[n].inputs[l.states + j] = front;
      moved = true;
    }
    size_t after = n + 1;
    for (size_t k = 0; k < l.scan_outputs; ++k) {
      ir::ValueId out = g.nodes[n].outputs[l.states + k];
      if (out == ir::kNoValue) continue;
      size_t rank = g.values[size_t(out)].shape.size();
      int64_t axis = normalized(l.output_axes[k], rank);
      if (axis <= 0 || axis >= int64_t(rank)) continue;
      std::vector<int64_t> perm;  // the stacked dim (first) goes to `axis`
      for (int64_t d = 0; d < int64_t(rank); ++d) perm.push_back(d < axis ? d + 1 : d == axis ? 0 : d);
      std::string stem = g.nodes[n].name + "/scan_output";
      ir::ValueId stacked = g.add_value(stem);
      g.nodes[n].outputs[l.states + k] = stacked;
      ir::Attributes a;
      a.set("perm", perm);
      g.insert_node(after++, ir::Node{g.unique_name(stem), OpKind::kTranspose, {stacked}, {out}, std::move(a)});
      moved = true;
    }
    if (!moved) continue;
    g.nodes[n].attrs.set("scan_input_axes", std::vector<int64_t>(l.scan_inputs, 0));
    g.nodes[n].attrs.set("scan_output_axes", std::vector<int64_t>(l.scan_outputs, 0));
    n = after - 1;
    ++changed;
  }
  return changed;
}

namespace {

// The symbols of a subgraph built for its node: one per distinct size the
// node gives it, named as the enclosing graph names it where that is a plain
// symbol, with the range it has there. Others get new names, and so do names
// of the form the subgraph's own inference makes up ("_d0").
class BodySymbols {
 public:
  BodySymbols(const ir::Network& outer, std::string where) : where_(std::move(where)) {
    for (auto& [s, r] : outer.dim_ranges()) {
      least_[s] = r.min;
      opt_[s] = r.opt;
      most_[s] = r.max;
    }
  }

  ir::Shape map(const ir::Shape& shape, size_t input) {
    ir::Shape out;
    for (size_t d = 0; d < shape.size(); ++d) {
      const ir::Dim& dim = shape[d];
      if (dim.is_constant()) {
        out.push_back(dim);
        continue;
      }
      std::string text = dim.to_string();
      auto [it, fresh] = names_.emplace(text, "");
      if (fresh) it->second = name_for(dim, text, input, d);
      out.push_back(ir::Dim::symbol(it->second));
    }
    return out;
  }

  const ir::DimRanges& ranges() const { return ranges_; }

 private:
  std::string name_for(const ir::Dim& dim, const std::string& text, size_t input, size_t d) {
    auto lo = dim.evaluate(least_), opt = dim.evaluate(opt_), hi = dim.evaluate(most_);
    if (!lo || !opt || !hi)
      fail(ErrorCode::kUnsupported, where_, ": input ", input, " dim ", d, " (", text, ") has no bound where the node gives it");
    std::set<std::string> symbols;
    dim.collect_symbols(symbols);
    bool plain = symbols.size() == 1 && dim == ir::Dim::symbol(text) && text.rfind("_d", 0) != 0;
    std::string name = plain ? text : "";
    for (int k = 0; name.empty() || !taken_.insert(name).second; ++k) name = str("outer", k);
    int64_t least = std::min({*lo, *opt, *hi}), most = std::max({*lo, *opt, *hi});
    ranges_[name] = ir::DimRange{least, std::clamp(*opt, least, most), most};
    return name;
  }

  std::string where_;
  ir::SymbolBindings least_, opt_, most_;
  std::set<std::string> taken_;  // the names given so far
  std::map<std::string, std::string> names_;  // the enclosing graph's dim, as text -> the subgraph's symbol
  ir::DimRanges ranges_;
};

ir::Shape without_leading(ir::Shape shape, size_t dims) {
  shape.erase(shape.begin(), shape.begin() + ptrdiff_t(std::min(dims, shape.size())));
  return shape;
}

// The shapes the node gives its subgraph's inputs, over every run of it: a
// carried value or state takes the node's output shape, whose dims the
// iterations change are data-dependent sizes of their own.
std::vector<ir::Shape> given_shapes(const ir::Network& net, const ir::Node& node) {
  auto shape = [&](ir::ValueId v) { return net.value(v).shape; };
  auto final_or_initial = [&](size_t output, size_t input) {
    return output < node.outputs.size() && node.outputs[output] != ir::kNoValue ? shape(node.outputs[output]) : shape(node.inputs[input]);
  };
  std::vector<ir::Shape> shapes;
  if (node.op == OpKind::kIf) {
    for (size_t i = 1; i < node.inputs.size(); ++i) shapes.push_back(shape(node.inputs[i]));
  } else if (node.op == OpKind::kLoop) {
    ir::LoopLayout l = ir::loop_layout(node);
    shapes = {ir::Shape{}, ir::Shape{}};
    for (size_t k = 0; k < l.carried; ++k) shapes.push_back(final_or_initial(k, 2 + k));
    for (size_t i = 2 + l.carried; i < node.inputs.size(); ++i) shapes.push_back(shape(node.inputs[i]));
  } else {
    ir::ScanLayout l = ir::scan_layout(node);
    for (size_t k = 0; k < l.states; ++k) shapes.push_back(without_leading(final_or_initial(k, k), l.batched ? 1 : 0));
    for (size_t j = 0; j < l.scan_inputs; ++j) {
      if (!l.batched && l.input_axes[j] != 0)
        fail(ErrorCode::kInternal, "node '", node.name, "' (Scan): scan input ", j, " is scanned along axis ", l.input_axes[j],
             "; scan_axes_to_front moves it to the front first");
      shapes.push_back(without_leading(shape(node.inputs[l.states + j]), l.batched ? 2 : 1));
    }
    for (size_t i = l.states + l.scan_inputs; i < node.inputs.size(); ++i) shapes.push_back(shape(node.inputs[i]));
  }
  return shapes;
}

// `body` with its inputs of `shapes`, and every output a value of its own
// that a node writes: the runtime binds each output to its own memory (an
// input or an output given twice gets a copy).
ir::Network specialized(const ir::Network& body, const std::vector<ir::Shape>& shapes) {
  Graph b = Graph::from_network(body);
  if (shapes.size() != b.inputs.size())
    fail(ErrorCode::kInvalidModel, "it has ", b.inputs.size(), " inputs; the node gives it ", shapes.size());
  for (size_t i = 0; i < shapes.size(); ++i) b.values[size_t(b.inputs[i])].shape = shapes[i];
  std::set<ir::ValueId> seen;
  for (ir::ValueId& out : b.outputs) {
    if (!b.values[size_t(out)].is_input && seen.insert(out).second) continue;
    std::string name = b.values[size_t(out)].name;
    ir::ValueId copy = b.add_value(name);
    b.nodes.push_back(ir::Node{b.unique_name("copy_" + name), OpKind::kIdentity, {out}, {copy}, {}});
    b.dead.push_back(false);
    out = copy;
  }
  b.ranges.clear();  // the build's profile gives the inputs' ranges
  return b.to_network();
}

}  // namespace

int build_subgraphs(Graph& g, const ir::Network& typed, const BuildOptions& options, const std::string& source) {
  std::map<std::string, const ir::Node*> typed_nodes;
  for (const ir::Node& node : typed.nodes()) typed_nodes[node.name] = &node;
  int built = 0;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    ir::Node& node = g.nodes[n];
    if (g.dead[n] || ir::family_of(node.op) != ir::OpFamily::kControlFlow) continue;
    const ir::Node& with_shapes = *typed_nodes.at(node.name);
    std::vector<ir::Shape> given = given_shapes(typed, with_shapes);
    for (const char* attr : node.op == OpKind::kIf ? std::vector<const char*>{"then_branch", "else_branch"}
                                                    : std::vector<const char*>{"body"}) {
      std::string where = str("node '", node.name, "' (", ir::op_name(node.op), "), subgraph '", attr, "'");
      plan::Plan p;
      try {
        BodySymbols symbols(typed, where);
        std::vector<ir::Shape> shapes;
        for (size_t i = 0; i < given.size(); ++i) shapes.push_back(symbols.map(given[i], i));
        BuildOptions inner;
        inner.precision = options.precision;
        inner.profiles = {symbols.ranges()};
        inner.default_data_dependent_bound = options.default_data_dependent_bound;
        inner.progress = [](const std::string&) {};
        ir::Network body = specialized(*node.attrs.get_graph(attr), shapes);
        for (auto& [name, bound] : options.data_dependent_bounds)
          if (body.find_value(name) || subgraph_tensor(body, name)) inner.data_dependent_bounds[name] = bound;
        p = build(body, inner, source);
      } catch (const Error& e) {
        if (std::string_view(e.what()).rfind(where, 0) == 0) throw;
        fail(e.code(), where, ": ", e.what());
      }
      std::vector<int64_t> memory = p.arena_offset;
      memory.push_back(p.arena_bytes);
      std::vector<std::string> names;
      std::vector<int64_t> ranges;
      for (auto& [s, r] : p.network.dim_ranges()) {
        names.push_back(s);
        ranges.insert(ranges.end(), {r.min, r.opt, r.max});
      }
      node.attrs.set(attr, ir::Subgraph(std::make_shared<const ir::Network>(std::move(p.network))));
      node.attrs.set(str(attr, "_memory"), memory);
      node.attrs.set(str(attr, "_symbols"), names);
      node.attrs.set(str(attr, "_ranges"), ranges);
      ++built;
    }
  }
  return built;
}

}  // namespace kiln::builder
