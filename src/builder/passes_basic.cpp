// Clean-up passes: identity removal, BatchNorm into Conv, outputs that are constants.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "graph.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"

namespace kiln::builder {

using ir::OpKind;

int remove_identities(Graph& g) {
  int changed = 0;
  // The readers of a removed identity's output read its input: redirected
  // lazily, each node's inputs resolved when the walk reaches it (readers come
  // after producers), so a long chain of identities is not rescanned per removal.
  std::vector<ir::ValueId> alias(g.values.size(), ir::kNoValue);
  auto resolve = [&](ir::ValueId v) {
    while (v != ir::kNoValue && alias[size_t(v)] != ir::kNoValue) v = alias[size_t(v)];
    return v;
  };
  std::vector<int> reads = g.read_counts();  // exact for a Dropout's mask: only nodes after it read it
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n]) continue;
    ir::Node& node = g.nodes[n];
    for (ir::ValueId& v : node.inputs) v = resolve(v);
    if (node.op != OpKind::kIdentity && node.op != OpKind::kDropout) continue;
    if (node.outputs.size() > 1 && node.outputs[1] != ir::kNoValue && (reads[size_t(node.outputs[1])] > 0 || g.is_output(node.outputs[1])))
      continue;  // the mask is wanted
    ir::ValueId in = node.inputs[0], out = node.outputs[0];
    if (g.is_output(out) && (g.values[size_t(in)].is_input || g.is_output(in) || g.weight_of(in))) continue;
    g.dead[n] = true;
    ++changed;
    if (!g.is_output(out) && !g.is_output(in)) {
      alias[size_t(out)] = in;
      continue;
    }
    // The output keeps its name: in's producer now writes it directly, and in's readers read it.
    for (auto& other : g.nodes)
      for (auto& o : other.outputs)
        if (o == in) o = out;
    g.replace_uses(in, out);
    alias[size_t(in)] = out;
  }
  return changed;
}

namespace {

bool is_movement(OpKind op) {
  return op == OpKind::kReshape || op == OpKind::kFlatten || op == OpKind::kSqueeze || op == OpKind::kUnsqueeze ||
         op == OpKind::kTranspose;
}

// Whether the Reshapes and Transposes `chain` (each reading the one before,
// the first reading `from`) leave the elements in the order they were: run
// on numbered elements at the corners of the profile ranges.
bool keeps_element_order(const Graph& g, ir::ValueId from, const std::vector<size_t>& chain) {
  constexpr int64_t kMaxElements = int64_t(1) << 22;
  std::vector<ir::SymbolBindings> corners(2);
  for (auto& [symbol, range] : g.ranges) {
    corners[0][symbol] = range.min;
    corners[1][symbol] = range.max;
  }
  for (const ir::SymbolBindings& bindings : corners) {
    auto dims_of = [&](ir::ValueId v) { return ir::evaluate_dims(g.values[size_t(v)].shape, bindings); };
    auto dims = dims_of(from);
    if (!dims || ir::checked_numel(*dims) > kMaxElements) return false;
    std::vector<double> numbers(size_t(ir::checked_numel(*dims)));
    for (size_t i = 0; i < numbers.size(); ++i) numbers[i] = double(i);
    reference::Tensor t = reference::make_tensor(DType::kFloat64, *dims, numbers);
    for (size_t n : chain) {
      const ir::Node& node = g.nodes[n];
      if (node.op == OpKind::kTranspose) {
        std::vector<int64_t> perm(t.dims.size());
        for (size_t i = 0; i < perm.size(); ++i) perm[i] = int64_t(perm.size() - 1 - i);
        perm = node.attrs.get_ints("perm", perm);
        for (auto& p : perm)
          if (p < 0) p += int64_t(perm.size());
        t = reference::permute(t, perm);
      } else {
        auto out = dims_of(node.outputs[0]);
        if (!out) return false;
        t.dims = *out;
      }
    }
    if (ir::read_doubles(t) != numbers) return false;
  }
  return true;
}

}  // namespace

int collapse_order_keeping_chains(Graph& g) {
  int changed = 0;
  Uses uses(g);
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n] || g.nodes[n].op != OpKind::kTranspose) continue;
    ir::ValueId from = g.nodes[n].inputs[0];
    std::vector<size_t> chain = {n};
    size_t keep = 0;  // length of the longest order-keeping prefix
    for (ir::ValueId v = g.nodes[n].outputs[0];;) {
      auto next = uses.sole_reader(v);
      if (!next || g.dead[*next] || !is_movement(g.nodes[*next].op)) break;
      chain.push_back(*next);
      v = g.nodes[*next].outputs[0];
      if (g.nodes[*next].op == OpKind::kTranspose && keeps_element_order(g, from, chain)) keep = chain.size();
    }
    if (keep == 0) continue;
    chain.resize(keep);
    ir::ValueId to = g.nodes[chain.back()].outputs[0];
    // The target dims as Reshape reads them: constants, and -1 for the one
    // symbolic dim (its size follows from the element count).
    std::vector<int64_t> shape;
    int symbolic = 0;
    for (const ir::Dim& d : g.values[size_t(to)].shape) {
      shape.push_back(d.is_constant() ? d.constant() : -1);
      symbolic += !d.is_constant();
    }
    if (symbolic > 1 || std::count(shape.begin(), shape.end(), 0)) continue;
    std::string name = g.nodes[n].name;
    for (size_t c : chain) g.dead[c] = true;
    g.nodes[chain.back()] = ir::Node{g.unique_name(name + "_as_reshape"), OpKind::kReshape, {from, g.add_ints(name + "_shape", shape)},
                                     {to}, {}};
    g.dead[chain.back()] = false;
    uses = Uses(g);
    ++changed;
  }
  return changed;
}

int transposes_through_merged_dims(Graph& g) {
  int changed = 0;
  Uses uses(g);
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    const ir::Node& transpose = g.nodes[n];
    if (g.dead[n] || transpose.op != OpKind::kTranspose || !transpose.attrs.has("perm")) continue;
    auto merge = uses.producer_of(transpose.inputs[0]);
    auto split = uses.only_reader(transpose.outputs[0]);
    if (!merge || !split || g.nodes[*merge].op != OpKind::kReshape || g.nodes[*split].op != OpKind::kReshape) continue;
    const ir::Shape& x = g.values[size_t(g.nodes[*merge].inputs[0])].shape;
    const ir::Shape& merged = g.values[size_t(transpose.inputs[0])].shape;
    const ir::Shape& moved = g.values[size_t(transpose.outputs[0])].shape;
    const ir::Shape& out = g.values[size_t(g.nodes[*split].outputs[0])].shape;
    std::vector<int64_t> perm = transpose.attrs.get_ints("perm");
    if (merged.size() < 2 || x.size() <= merged.size() || perm.size() != merged.size() || perm[0] != 0) continue;
    // x = [lead..., rest...] with merged = [prod(lead), rest...] and out = [lead..., moved[1:]...].
    size_t lead = x.size() - merged.size() + 1;
    ir::Dim product(1);
    for (size_t i = 0; i < lead; ++i) product = product * x[i];
    bool fits = product == merged[0] && out.size() == lead + moved.size() - 1 &&
                std::equal(x.begin() + long(lead), x.end(), merged.begin() + 1) && std::equal(x.begin(), x.begin() + long(lead), out.begin()) &&
                std::equal(moved.begin() + 1, moved.end(), out.begin() + long(lead));
    if (!fits) continue;
    std::vector<int64_t> whole(lead);
    std::iota(whole.begin(), whole.end(), 0);
    for (size_t i = 1; i < perm.size(); ++i) whole.push_back((perm[i] < 0 ? perm[i] + int64_t(perm.size()) : perm[i]) + int64_t(lead) - 1);
    ir::Attributes a;
    a.set("perm", whole);
    ir::ValueId from = g.nodes[*merge].inputs[0], to = g.nodes[*split].outputs[0];
    if (uses.sole_reader(transpose.outputs[0])) g.dead[n] = true;
    if (uses.sole_reader(transpose.inputs[0]) == n) g.dead[*merge] = true;
    g.nodes[*split] = ir::Node{g.unique_name(transpose.name + "_unmerged"), OpKind::kTranspose, {from}, {to}, a};
    uses = Uses(g);
    ++changed;
  }
  return changed;
}

int transposes_to_views(Graph& g) {
  int changed = 0;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    ir::Node& node = g.nodes[n];
    if (g.dead[n] || node.op != OpKind::kTranspose) continue;
    const ir::Shape& x = g.values[size_t(node.inputs[0])].shape;
    std::vector<int64_t> perm(x.size());
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = int64_t(perm.size() - 1 - i);
    perm = node.attrs.get_ints("perm", perm);
    if (perm.size() != x.size()) continue;
    // Data moves only if the dims that are not 1 change their order.
    std::vector<int64_t> moved, unit_in, unit_out;
    for (size_t i = 0; i < perm.size(); ++i)
      if (x[size_t(perm[i])] == ir::Dim(1)) unit_out.push_back(int64_t(i));
      else moved.push_back(perm[i]);
    if (!std::is_sorted(moved.begin(), moved.end())) continue;
    for (size_t i = 0; i < x.size(); ++i)
      if (x[i] == ir::Dim(1)) unit_in.push_back(int64_t(i));
    if (unit_in.empty() && unit_out.empty()) continue;  // no unit dims and a real permutation
    // Squeeze the unit dims, unsqueeze them where the transpose puts them: both views.
    auto axes = [&](const std::vector<int64_t>& a) { return g.add_ints(node.name + "_axes", a); };
    ir::ValueId in = node.inputs[0], out = node.outputs[0];
    std::string name = node.name;
    ir::ValueId squeezed = unit_out.empty() ? out : g.add_value(g.values[size_t(out)].name + "_squeezed");
    std::vector<ir::Node> views;
    if (!unit_in.empty()) views.push_back(ir::Node{g.unique_name(name + "_squeeze"), OpKind::kSqueeze, {in, axes(unit_in)}, {squeezed}, {}});
    if (!unit_out.empty())
      views.push_back(ir::Node{g.unique_name(name + "_unsqueeze"), OpKind::kUnsqueeze, {unit_in.empty() ? in : squeezed, axes(unit_out)},
                               {out}, {}});
    g.nodes[n] = views[0];
    if (views.size() == 2) {
      g.nodes.insert(g.nodes.begin() + long(n) + 1, views[1]);
      g.dead.insert(g.dead.begin() + long(n) + 1, false);
      ++n;
    }
    ++changed;
  }
  return changed;
}

int fold_batchnorm_into_conv(Graph& g) {
  int changed = 0;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n] || g.nodes[n].op != OpKind::kBatchNormalization) continue;
    ir::Node& bn = g.nodes[n];
    ir::ValueId conv_out = bn.inputs[0];
    auto users = g.consumers(conv_out);
    if (users.size() != 1 || g.is_output(conv_out)) continue;
    size_t c = 0;
    for (; c < n; ++c)
      if (!g.dead[c] && g.nodes[c].op == OpKind::kConv && g.nodes[c].outputs[0] == conv_out) break;
    if (c == n) continue;
    ir::Node& conv = g.nodes[c];
    const ir::TensorData* w = g.weight_of(conv.inputs[1]);
    const ir::TensorData* b = conv.inputs.size() > 2 ? g.weight_of(conv.inputs[2]) : nullptr;
    if (!w || (conv.inputs.size() > 2 && conv.inputs[2] != ir::kNoValue && !b)) continue;
    const ir::TensorData *scale = g.weight_of(bn.inputs[1]), *shift = g.weight_of(bn.inputs[2]),
                         *mean = g.weight_of(bn.inputs[3]), *var = g.weight_of(bn.inputs[4]);
    if (!scale || !shift || !mean || !var || !is_floating(w->dtype) || w->dims.empty() || w->dims[0] == 0) continue;  // no channels: nothing to fold
    double eps = bn.attrs.get_float("epsilon", 1e-5);
    std::vector<double> wv = ir::read_doubles(*w), s = ir::read_doubles(*scale), sh = ir::read_doubles(*shift),
                        mu = ir::read_doubles(*mean), va = ir::read_doubles(*var);
    int64_t m = w->dims[0], per = w->numel() / m;
    std::vector<double> bias = b ? ir::read_doubles(*b) : std::vector<double>(size_t(m), 0.0);
    for (int64_t o = 0; o < m; ++o) {
      double k = s[size_t(o)] / std::sqrt(va[size_t(o)] + eps);
      for (int64_t i = 0; i < per; ++i) wv[size_t(o * per + i)] *= k;
      bias[size_t(o)] = (bias[size_t(o)] - mu[size_t(o)]) * k + sh[size_t(o)];
    }
    DType dtype = w->dtype;  // copies: add_weight below may move the values that w points into
    std::vector<int64_t> dims = w->dims;
    std::string stem = g.values[size_t(conv.inputs[1])].name;
    conv.inputs.resize(3);
    conv.inputs[1] = g.add_weight(stem + "_bn", reference::make_tensor(dtype, dims, wv));
    conv.inputs[2] = g.add_weight(stem + "_bn_bias", reference::make_tensor(dtype, {m}, bias));
    conv.outputs[0] = bn.outputs[0];
    g.dead[n] = true;
    ++changed;
  }
  return changed;
}

}  // namespace kiln::builder

namespace kiln::builder {

int materialize_outputs(Graph& g) {
  int changed = 0;
  std::set<ir::ValueId> produced;
  for (size_t n = 0; n < g.nodes.size(); ++n)
    if (!g.dead[n])
      for (ir::ValueId v : g.nodes[n].outputs) produced.insert(v);
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    ir::ValueId out = g.outputs[i];
    if (produced.count(out)) continue;
    // The output keeps its name; the constant or input it equals moves to a new one.
    Graph::Value& v = g.values[size_t(out)];
    ir::ValueId source = ir::ValueId(g.values.size());
    Graph::Value moved = v;
    moved.name = g.unique_name(v.name);
    g.values.push_back(moved);
    Graph::Value& original = g.values[size_t(out)];
    original.weight.reset();
    if (original.is_input) {
      fail(ErrorCode::kUnsupported, "output '", original.name, "' is also an input; give the output its own name");
    }
    g.replace_uses(out, source);
    for (ir::ValueId& o : g.outputs)
      if (o == source) o = out;
    g.nodes.push_back(ir::Node{g.unique_name("copy_" + original.name), ir::OpKind::kIdentity, {source}, {out}, {}});
    g.dead.push_back(false);
    produced.insert(out);
    ++changed;
  }
  return changed;
}

}  // namespace kiln::builder

namespace kiln::builder {

int lower_batchnorm(Graph& g) {
  int changed = 0;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n] || g.nodes[n].op != ir::OpKind::kBatchNormalization) continue;
    ir::Node bn = g.nodes[n];
    const Graph::Value& xv = g.values[size_t(bn.inputs[0])];
    DType dtype = xv.dtype;
    size_t rank = xv.shape.size();
    double eps = bn.attrs.get_float("epsilon", 1e-5);
    // Per-channel parameters seen as [C, 1, ..., 1] so they broadcast over N and the spatial dims.
    std::vector<int64_t> view(rank - 1, 1);
    view[0] = -1;
    std::vector<ir::Node> added;
    auto as_channel = [&](ir::ValueId p) {
      ir::ValueId shape = g.add_ints(bn.name + "_cshape", view);
      ir::ValueId out = g.add_value(g.values[size_t(p)].name + "_c");
      added.push_back(ir::Node{g.unique_name(bn.name + "_view"), ir::OpKind::kReshape, {p, shape}, {out}, {}});
      return out;
    };
    auto op = [&](ir::OpKind kind, std::vector<ir::ValueId> in, ir::ValueId out = ir::kNoValue) {
      if (out == ir::kNoValue) out = g.add_value(bn.name + "_t");
      added.push_back(ir::Node{g.unique_name(bn.name + "_" + std::string(ir::op_name(kind))), kind, std::move(in), {out}, {}});
      return out;
    };
    ir::ValueId scale = as_channel(bn.inputs[1]), shift = as_channel(bn.inputs[2]);
    ir::ValueId mean = as_channel(bn.inputs[3]), var = as_channel(bn.inputs[4]);
    ir::ValueId eps_w = g.add_weight(bn.name + "_eps", reference::make_tensor(dtype, {}, {eps}));
    // y = (x - mean) / sqrt(var + eps) * scale + shift
    ir::ValueId norm = op(ir::OpKind::kDiv, {op(ir::OpKind::kSub, {bn.inputs[0], mean}), op(ir::OpKind::kSqrt, {op(ir::OpKind::kAdd, {var, eps_w})})});
    op(ir::OpKind::kAdd, {op(ir::OpKind::kMul, {norm, scale}), shift}, bn.outputs[0]);
    n = g.replace_node(n, std::move(added));
    ++changed;
  }
  return changed;
}

}  // namespace kiln::builder
