// Constant folding: a node whose inputs are all constants runs once, at build
// time, on the reference interpreter. A model of a few hundred bytes can ask
// for unbounded work here (MatMuls of expanded constants, a Conv over a padded
// constant whose im2col columns need terabytes), so every fold is priced first
// and folding stays within a per-node and a per-pass budget; a node over budget
// stays in the network and runs at run time like any other.
#include <algorithm>
#include <climits>
#include <map>

#include "graph.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/ir/vision.h"
#include "kiln/reference.h"

namespace kiln::builder {

using ir::OpKind;

namespace {

int64_t saturating_mul(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

int64_t saturating_add(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

// The product of dims[from..], each dim counted as at least 1: a Conv with no
// output channels still fills its im2col columns, so an empty dim must not make
// the estimate vanish.
int64_t volume(const std::vector<int64_t>& dims, size_t from = 0) {
  int64_t n = 1;
  for (size_t i = from; i < dims.size(); ++i) n = saturating_mul(n, std::max<int64_t>(dims[i], 1));
  return n;
}

std::vector<int64_t> dims_of(const Graph& g, ir::ValueId v) {
  if (const ir::TensorData* w = g.weight_of(v)) return w->dims;
  return ir::shape_constants(g.values[size_t(v)].shape);
}

}  // namespace

// Every element the reference reads or writes, plus the inner loops of the ops
// that reduce over a window or a shared dim (their temporaries are no larger).
int64_t fold_work(const Graph& g, const ir::Node& node) {
  int64_t work = 0;
  for (ir::ValueId v : node.inputs)
    if (v != ir::kNoValue) work = saturating_add(work, volume(dims_of(g, v)));
  for (ir::ValueId v : node.outputs)
    if (v != ir::kNoValue) work = saturating_add(work, volume(dims_of(g, v)));
  auto in = [&](size_t i) { return dims_of(g, node.inputs[i]); };
  int64_t out = volume(dims_of(g, node.outputs[0]));
  int64_t inner = 0;  // products per output element, for the ops below
  switch (node.op) {
    case OpKind::kMatMul:
    case OpKind::kFusedMatMul:
    case OpKind::kGemm: {
      std::vector<int64_t> a = in(0);
      bool trans_a = node.op == OpKind::kGemm && node.attrs.get_int("transA", 0) != 0;
      inner = a.empty() ? 1 : std::max<int64_t>(trans_a ? a.front() : a.back(), 1);
      break;
    }
    case OpKind::kConv:
    case OpKind::kConvChannelsLast:  // weight [M, C/group, k...] or [M, k..., C/group]
      inner = volume(in(1), 1);
      break;
    case OpKind::kConvTranspose:  // every input element adds into M/group x kernel outputs
      out = volume(in(0));
      inner = volume(in(1), 1);
      break;
    case OpKind::kMaxPool:
    case OpKind::kAveragePool:
    case OpKind::kMaxPoolChannelsLast:
      inner = volume(node.attrs.get_ints("kernel_shape"));
      break;
    case OpKind::kEinsum:  // every label's size is some input's dim: the loop nest is at most their product
      out = 1;
      inner = 1;
      for (size_t i = 0; i < node.inputs.size(); ++i) inner = saturating_mul(inner, volume(in(i)));
      break;
    case OpKind::kIf:  // subgraphs are inlined or unrolled by their own pass, never run whole here
    case OpKind::kLoop:
    case OpKind::kScan:
      return INT64_MAX;
    case OpKind::kGridSample:  // up to 4 taps a dim, 3 dims
      inner = 64;
      break;
    case OpKind::kDeformConv:  // every weight's tap samples 4 input elements
      inner = saturating_mul(volume(in(1), 1), 4);
      break;
    case OpKind::kMultinomial:  // each sample walks its row of logits three times
      inner = saturating_mul(volume(in(0), 1), 3);
      break;
    case OpKind::kRoiAlign: {  // the samples of a bin: sampling_ratio squared, or as many as an adaptive grid may take
      int64_t ratio = node.attrs.get_int("sampling_ratio", 0), side = ratio > 0 ? ratio : ir::kRoiAlignMaxGrid;
      inner = saturating_mul(side, side);
      break;
    }
    default:
      break;
  }
  return saturating_add(work, saturating_mul(out, inner));
}

namespace {

bool all_inputs_constant(const Graph& g, const ir::Node& node) {
  for (ir::ValueId v : node.inputs)
    if (v != ir::kNoValue && !g.weight_of(v)) return false;
  return true;
}

int64_t bytes_of(const Graph::Value& v) {
  if (!ir::shape_is_constant(v.shape) || is_string(v.dtype)) return -1;  // a string tensor's size is in its data
  int64_t bytes;
  if (__builtin_mul_overflow(ir::checked_numel(ir::shape_constants(v.shape)), int64_t(dtype_size(v.dtype)), &bytes)) return INT64_MAX;
  return bytes;
}

ir::TensorData known_as_weight(const Graph::Value& v) {
  std::vector<double> values;
  for (auto& d : *v.known) values.push_back(double(d.constant()));
  ir::TensorData t = reference::make_tensor(DType::kInt64, ir::shape_constants(v.shape), values);
  if (v.dtype != DType::kInt64) t = reference::make_tensor(v.dtype, t.dims, values);
  return t;
}

// The node alone as a network of its constant inputs, run on the reference.
// A constant read through several inputs (Mul(c, c)) is one weight there.
std::vector<reference::Tensor> evaluate(const Graph& g, const ir::Node& node) {
  ir::Network single;
  ir::Node copy = node;
  std::map<ir::ValueId, ir::ValueId> weights;
  for (auto& v : copy.inputs) {
    if (v == ir::kNoValue) continue;
    auto [at, fresh] = weights.try_emplace(v, ir::kNoValue);
    if (fresh) at->second = single.add_weight(g.values[size_t(v)].name, *g.weight_of(v));
    v = at->second;
  }
  for (auto& v : copy.outputs)
    if (v != ir::kNoValue) v = single.add_value(g.values[size_t(v)].name);
  std::vector<ir::ValueId> outs = copy.outputs;
  single.add_node(std::move(copy));
  for (ir::ValueId v : outs)
    if (v != ir::kNoValue) single.add_output(v);
  single.finalize();
  return reference::run(single, {});
}

}  // namespace

int fold_constants(Graph& g, const FoldBudget& budget) {
  int64_t weight_bytes = 0;
  for (const Graph::Value& v : g.values)
    if (v.weight) weight_bytes = saturating_add(weight_bytes, int64_t(v.weight->data.size()));
  int64_t work_left = saturating_add(budget.pass_work, weight_bytes);
  int64_t bytes_left = saturating_add(budget.pass_bytes, weight_bytes);
  int changed = 0;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n]) continue;
    const ir::Node& node = g.nodes[n];
    // Every output a small tensor, not a graph output (the runtime writes those).
    int64_t out_bytes = 0;
    bool small = !node.outputs.empty();
    for (ir::ValueId v : node.outputs) {
      if (v == ir::kNoValue) continue;
      int64_t bytes = bytes_of(g.values[size_t(v)]);
      small = small && bytes >= 0 && bytes <= budget.max_bytes && !g.is_output(v);
      out_bytes = saturating_add(out_bytes, std::max<int64_t>(bytes, 0));
    }
    if (!small || out_bytes > bytes_left) continue;
    // Shape arithmetic whose result is fully known at build time.
    bool all_known = true;
    for (ir::ValueId v : node.outputs) {
      if (v == ir::kNoValue) continue;
      const Graph::Value& val = g.values[size_t(v)];
      all_known = all_known && val.known && is_integer(val.dtype) &&
                  std::all_of(val.known->begin(), val.known->end(), [](const ir::Dim& d) { return d.is_constant(); });
    }
    if (all_known) {
      for (ir::ValueId v : node.outputs)
        if (v != ir::kNoValue) g.values[size_t(v)].weight = known_as_weight(g.values[size_t(v)]);
    } else {
      if (!all_inputs_constant(g, node)) continue;
      int64_t work = fold_work(g, node);
      if (work > budget.max_work || work > work_left) continue;
      work_left -= work;
      std::vector<reference::Tensor> results = evaluate(g, node);
      size_t r = 0;
      for (ir::ValueId v : node.outputs)
        if (v != ir::kNoValue) g.values[size_t(v)].weight = results[r++];
    }
    bytes_left -= out_bytes;
    g.dead[n] = true;
    ++changed;
  }
  return changed;
}

}  // namespace kiln::builder
