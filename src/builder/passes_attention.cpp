// Attention fusion: softmax(alpha * Q @ K^T [causal mask]) @ V becomes one Attention node
// that reads Q, K and V where they already lie. Exported attention reaches its
// operands through chains of Reshape, Transpose, Squeeze, Unsqueeze and
// single-index Gather (the split of a packed QKV projection into heads); each
// chain is a strided view of the tensor it starts from, so the fused kernel
// reads that tensor directly and the copies disappear with the matmuls and the
// softmax. A Transpose of the result (heads back together) becomes the layout
// the kernel writes. The views are programs over the input dims, so they hold
// for dynamic shapes (one symbolic dim per reshape). Where a chain is not a
// view all the way up, the kernel reads the farthest tensor it is a view of.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "graph.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::builder {

using ir::OpKind;

namespace {

// The runtime's attention kernel holds a row of the head dim in registers.
constexpr int64_t kMaxFusedHeadDim = 128;

// A value as its first tensor up a chain of view-like ops, and the view program
// (ir::ViewStep encoding) that makes the value from that tensor.
struct Viewed {
  ir::ValueId root;
  std::vector<int64_t> program;
};

// The step that makes v from its producer's first input, if that producer is a view.
std::optional<std::vector<int64_t>> view_step(const Graph& g, const ir::Node& n, ir::ValueId v) {
  const ir::Shape& in = g.values[size_t(n.inputs[0])].shape;
  const ir::Shape& out = g.values[size_t(v)].shape;
  if (in.empty() || out.empty()) return std::nullopt;
  switch (n.op) {
    case OpKind::kReshape: case OpKind::kFlatten: case OpKind::kSqueeze: case OpKind::kUnsqueeze: {
      std::vector<int64_t> step{int64_t(ir::ViewStep::kReshape), int64_t(out.size())};
      int symbolic = 0;
      for (const ir::Dim& d : out) {
        symbolic += !d.is_constant();
        step.push_back(d.is_constant() ? d.constant() : -1);
      }
      if (symbolic > 1) return std::nullopt;  // one unknown dim follows from the element count; two do not
      return step;
    }
    case OpKind::kTranspose: {
      std::vector<int64_t> perm(in.size());
      std::iota(perm.rbegin(), perm.rend(), 0);
      perm = n.attrs.get_ints("perm", perm);
      std::vector<int64_t> step{int64_t(ir::ViewStep::kTranspose), int64_t(perm.size())};
      for (int64_t p : perm) step.push_back(p < 0 ? p + int64_t(in.size()) : p);
      return step;
    }
    case OpKind::kGather: {
      const ir::TensorData* index = n.inputs.size() > 1 ? g.weight_of(n.inputs[1]) : nullptr;
      if (!index || index->numel() != 1) return std::nullopt;
      int64_t axis = n.attrs.get_int("axis", 0);
      axis = axis < 0 ? axis + int64_t(in.size()) : axis;
      int64_t i = ir::read_ints(*index)[0];
      if (axis < 0 || axis >= int64_t(in.size())) return std::nullopt;
      if (i < 0 && in[size_t(axis)].is_constant()) i += in[size_t(axis)].constant();
      if (i < 0) return std::nullopt;
      return std::vector<int64_t>{int64_t(ir::ViewStep::kPick), 3, axis, i, index->dims.empty() ? 0 : 1};
    }
    case OpKind::kSplit: {  // one output: a range of the axis
      int64_t axis = n.attrs.get_int("axis", 0);
      axis = axis < 0 ? axis + int64_t(in.size()) : axis;
      auto which = std::find(n.outputs.begin(), n.outputs.end(), v);
      if (axis < 0 || axis >= int64_t(in.size()) || out.size() != in.size() || !out[size_t(axis)].is_constant()) return std::nullopt;
      int64_t start = 0;
      for (auto o = n.outputs.begin(); o != which; ++o) {
        const ir::Shape& before = g.values[size_t(*o)].shape;
        if (before.size() != in.size() || !before[size_t(axis)].is_constant()) return std::nullopt;
        start += before[size_t(axis)].constant();
      }
      return std::vector<int64_t>{int64_t(ir::ViewStep::kNarrow), 3, axis, start, out[size_t(axis)].constant()};
    }
    default: return std::nullopt;
  }
}

// Every way of reading v as a view: v itself (no steps) first, then each tensor
// further up its chain of view-like ops with the program from there.
std::vector<Viewed> views_of(const Graph& g, const Uses& uses, ir::ValueId v) {
  std::vector<std::vector<int64_t>> steps;  // last step first
  std::vector<Viewed> out{{v, {}}};
  ir::ValueId root = v;
  for (;;) {
    auto p = uses.producer_of(root);
    if (!p || g.nodes[*p].inputs.empty()) break;
    auto step = view_step(g, g.nodes[*p], root);
    if (!step) break;
    steps.push_back(*step);
    root = g.nodes[*p].inputs[0];
    Viewed viewed{root, {}};
    for (auto it = steps.rbegin(); it != steps.rend(); ++it) viewed.program.insert(viewed.program.end(), it->begin(), it->end());
    out.push_back(std::move(viewed));
  }
  return out;
}

// Binds every symbol to its range's min, opt or max value.
std::vector<ir::SymbolBindings> range_corners(const Graph& g) {
  std::vector<ir::SymbolBindings> corners(3);
  for (auto& [name, r] : g.ranges) {
    corners[0][name] = r.min;
    corners[1][name] = r.opt;
    corners[2][name] = r.max;
  }
  return corners;
}

std::optional<double> scalar_constant(const Graph& g, ir::ValueId v) {
  const ir::TensorData* t = g.weight_of(v);
  if (!t || t->numel() != 1 || !is_floating(t->dtype)) return std::nullopt;
  return ir::read_doubles(*t)[0];
}

// A constant boolean [.., Sq, Sk] (leading dims 1) that is true exactly where key j > query i.
bool is_causal_mask(const Graph& g, ir::ValueId v) {
  const ir::TensorData* t = g.weight_of(v);
  if (!t || t->dtype != DType::kBool || t->dims.size() < 2) return false;
  for (size_t i = 0; i + 2 < t->dims.size(); ++i)
    if (t->dims[i] != 1) return false;
  int64_t rows = t->dims[t->dims.size() - 2], cols = t->dims.back();
  std::vector<int64_t> bits = ir::read_ints(*t);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      if ((bits[size_t(i * cols + j)] != 0) != (j > i)) return false;
  return true;
}

// A constant float [.., Sq, Sk] (leading dims 1) that adds 0 where key j <= query i
// and masks the rest: -inf, or a value so negative (below -1e4) that its
// softmax weight is 0 in every float type, as exporters write a causal mask.
bool is_causal_additive_mask(const Graph& g, ir::ValueId v) {
  const ir::TensorData* t = g.weight_of(v);
  if (!t || !is_floating(t->dtype) || t->dims.size() < 2) return false;
  for (size_t i = 0; i + 2 < t->dims.size(); ++i)
    if (t->dims[i] != 1) return false;
  int64_t rows = t->dims[t->dims.size() - 2], cols = t->dims.back();
  std::vector<double> values = ir::read_doubles(*t);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      double m = values[size_t(i * cols + j)];
      if (j > i ? !(m <= -1e4) : m != 0) return false;
    }
  return true;
}

// Where(Equal(ReduceMax(mask over its last axis), -inf), 0, probs): ONNX's
// Attention zeroing the rows its mask leaves without keys (the import's decomposition).
bool zeroes_rows_the_mask_empties(const Graph& g, const Uses& uses, const ir::Node& where, ir::ValueId probs, ir::ValueId mask) {
  if (where.op != OpKind::kWhere || where.inputs.size() != 3 || where.inputs[2] != probs || where.inputs[1] == probs ||
      scalar_constant(g, where.inputs[1]) != 0.0)
    return false;
  auto equal = uses.producer_of(where.inputs[0]);
  if (!equal || g.nodes[*equal].op != OpKind::kEqual) return false;
  const ir::Node& eq = g.nodes[*equal];
  int side = scalar_constant(g, eq.inputs[1]) == -INFINITY ? 0 : scalar_constant(g, eq.inputs[0]) == -INFINITY ? 1 : -1;
  if (side < 0) return false;
  auto reduce = uses.producer_of(eq.inputs[size_t(side)]);
  if (!reduce || g.nodes[*reduce].op != OpKind::kReduceMax || g.nodes[*reduce].inputs[0] != mask) return false;
  const ir::Node& r = g.nodes[*reduce];
  const int64_t rank = int64_t(g.values[size_t(mask)].shape.size());
  std::vector<int64_t> axes = r.attrs.get_ints("axes");
  if (r.inputs.size() > 1) {
    const ir::TensorData* t = g.weight_of(r.inputs[1]);
    if (!t) return false;
    axes = ir::read_ints(*t);
  }
  return axes.size() == 1 && (axes[0] == -1 || axes[0] == rank - 1) && r.attrs.get_int("keepdims", 1) == 1;
}

bool plain_matmul(const ir::Node& n) {
  return n.op == OpKind::kFusedMatMul && n.inputs.size() == 2 && n.attrs.get_string("activation", "none") == "none";
}

}  // namespace

int fuse_attention(Graph& g) {
  int changed = 0;
  Uses uses(g);
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n] || !plain_matmul(g.nodes[n])) continue;
    const ir::Node scores = g.nodes[n];
    // The attention kernel takes float32 and the half types: float64 keeps its matmuls and softmax.
    if (g.values[size_t(scores.outputs[0])].dtype == DType::kFloat64) continue;
    // Between the scores and the softmax: scalar scales (Div or Mul by a
    // constant), a causal mask (Where(upper triangle, -inf, scores), or the
    // scores plus a constant 0 / -inf triangle) and, after the scales, one
    // mask of any values: a float tensor added (a padding mask, a position
    // bias) or a bool tensor choosing between the scores and a constant fill.
    // The fused node applies the mask before the causal rule; a bool mask
    // after the causal one must then fill with -inf for the two to agree.
    double alpha = scores.attrs.get_float("alpha", 1.0);
    bool causal = false;
    std::optional<ir::ValueId> mask;
    int64_t mask_keep = 1;
    double mask_fill = -INFINITY;
    ir::ValueId logits = scores.outputs[0];
    std::vector<size_t> between;
    auto softmax = uses.only_reader(logits);
    while (softmax && g.nodes[*softmax].op != OpKind::kSoftmax) {
      const ir::Node& e = g.nodes[*softmax];
      // The scale (Mul/Div) or the fill value (Where) is the constant input 1.
      double c = e.inputs.size() > 1 ? scalar_constant(g, e.inputs[1]).value_or(NAN) : NAN;
      bool binary = e.inputs.size() == 2 && e.inputs[0] == logits, where = e.inputs.size() == 3 && e.inputs[2] == logits;
      bool added = e.op == OpKind::kAdd && e.inputs.size() == 2 && (e.inputs[0] == logits) != (e.inputs[1] == logits);
      ir::ValueId other = added ? e.inputs[e.inputs[0] == logits ? 1 : 0] : ir::kNoValue;
      if (e.op == OpKind::kMul && binary && !std::isnan(c) && !mask) alpha *= c;
      else if (e.op == OpKind::kDiv && binary && !std::isnan(c) && c != 0 && !mask) alpha /= c;
      else if (e.op == OpKind::kWhere && where && !causal && std::isinf(c) && c < 0 && is_causal_mask(g, e.inputs[0])) causal = true;
      else if (added && !causal && is_causal_additive_mask(g, other)) causal = true;
      else if (added && !mask && is_floating(g.values[size_t(other)].dtype)) mask = other;
      else if (e.op == OpKind::kWhere && e.inputs.size() == 3 && !mask && g.values[size_t(e.inputs[0])].dtype == DType::kBool &&
               (e.inputs[1] == logits) != (e.inputs[2] == logits)) {
        // Where(m, scores, fill) keeps the scores where m holds; Where(m, fill, scores) where it does not.
        mask_keep = e.inputs[1] == logits ? 1 : 0;
        std::optional<double> fill = scalar_constant(g, e.inputs[mask_keep ? 2 : 1]);
        if (!fill || std::isnan(*fill) || (causal && !(std::isinf(*fill) && *fill < 0))) break;
        mask = e.inputs[0];
        mask_fill = *fill;
      } else break;
      between.push_back(*softmax);
      logits = e.outputs[0];
      softmax = uses.only_reader(logits);
    }
    if (!softmax || g.nodes[*softmax].op != OpKind::kSoftmax || g.nodes[*softmax].inputs[0] != logits ||
        g.values[size_t(logits)].shape != g.values[size_t(scores.outputs[0])].shape)
      continue;
    size_t rank = g.values[size_t(scores.outputs[0])].shape.size();
    int64_t axis = g.nodes[*softmax].attrs.get_int("axis", -1);
    if (axis != -1 && axis != int64_t(rank) - 1) continue;
    ir::ValueId probs = g.nodes[*softmax].outputs[0];
    auto product = uses.only_reader(probs);
    std::optional<size_t> zeroing;  // the Where that zeroes rows without keys, taken in as empty_rows_zero
    if (product && mask && zeroes_rows_the_mask_empties(g, uses, g.nodes[*product], probs, *mask)) {
      zeroing = product;
      probs = g.nodes[*zeroing].outputs[0];
      product = uses.only_reader(probs);
    }
    if (!product || !plain_matmul(g.nodes[*product]) || g.nodes[*product].inputs[0] != probs || g.nodes[*product].inputs[1] == probs ||
        g.nodes[*product].attrs.get_int("trans_b", 0) != 0 || g.nodes[*product].attrs.get_float("alpha", 1.0) != 1.0)
      continue;
    // The attention node reading q, k and v through the given views; with the
    // Transpose alone reading the result (the heads put back together) as the
    // layout the kernel writes.
    size_t place = *product;
    auto reader = uses.only_reader(g.nodes[*product].outputs[0]);
    bool transposed_out = reader && g.nodes[*reader].op == OpKind::kTranspose && g.nodes[*reader].attrs.has("perm");
    auto attention_over = [&](const Viewed& q, const Viewed& k, const Viewed& v) {
      ir::Node attention{scores.name, OpKind::kAttention, {q.root, k.root, v.root}, {g.nodes[*product].outputs[0]}, {}};
      if (mask) {
        attention.inputs.push_back(*mask);
        if (g.values[size_t(*mask)].dtype == DType::kBool) {
          attention.attrs.set("mask_keep", mask_keep);
          if (std::isfinite(mask_fill)) attention.attrs.set("mask_fill", mask_fill);  // absent: -inf (attributes are finite)
        }
      }
      attention.attrs.set("q_view", q.program);
      attention.attrs.set("k_view", k.program);
      attention.attrs.set("v_view", v.program);
      attention.attrs.set("k_transposed", int64_t(scores.attrs.get_int("trans_b", 0) == 0));
      attention.attrs.set("scale", alpha);
      if (causal) attention.attrs.set("causal", int64_t(1));
      if (zeroing) attention.attrs.set("empty_rows_zero", int64_t(1));
      if (transposed_out) {
        std::vector<int64_t> perm = g.nodes[*reader].attrs.get_ints("perm");
        for (auto& p : perm) p = p < 0 ? p + int64_t(rank) : p;
        attention.attrs.set("out_perm", perm);
        attention.outputs[0] = g.nodes[*reader].outputs[0];
      }
      return attention;
    };
    // The fused node must mean the same, and its views must hold at the shapes the profile allows.
    const auto& shape = [&](ir::ValueId id) -> const ir::Shape& { return g.values[size_t(id)].shape; };
    auto fits = [&](const ir::Node& attention) {
      const ir::ValueId q = attention.inputs[0], k = attention.inputs[1], v = attention.inputs[2];
      try {
        ir::Shape q_shape = ir::apply_view_program(attention, "q_view", shape(q));
        if (q_shape != shape(scores.inputs[0]) ||
            ir::apply_view_program(attention, "k_view", shape(k)) != shape(scores.inputs[1]) ||
            ir::apply_view_program(attention, "v_view", shape(v)) != shape(g.nodes[*product].inputs[1]) ||
            ir::attention_output_shape(attention, shape(q), shape(k), shape(v)) != shape(attention.outputs[0]) ||
            (mask && ir::broadcast_shapes(shape(*mask), shape(scores.outputs[0])) != shape(scores.outputs[0])) ||
            !q_shape.back().is_constant() || q_shape.back().constant() > kMaxFusedHeadDim)
          return false;
        for (const auto& bindings : range_corners(g)) {
          auto qd = ir::evaluate_dims(shape(q), bindings), kd = ir::evaluate_dims(shape(k), bindings),
               vd = ir::evaluate_dims(shape(v), bindings);
          if (!qd || !kd || !vd) return false;
          ir::attention_geometry(attention, *qd, *kd, *vd);
        }
        return true;
      } catch (const Error&) {
        return false;  // not expressible as views here
      }
    };
    // Each operand read from as far up its chain as a view holds at every
    // profile corner; where one does not (a reshape no strided view of the
    // tensor can express), a nearer tensor is read and the ops above it stay.
    std::vector<Viewed> chosen{views_of(g, uses, scores.inputs[0]).front(), views_of(g, uses, scores.inputs[1]).front(),
                               views_of(g, uses, g.nodes[*product].inputs[1]).front()};
    if (!fits(attention_over(chosen[0], chosen[1], chosen[2]))) continue;
    const ir::ValueId operands[3] = {scores.inputs[0], scores.inputs[1], g.nodes[*product].inputs[1]};
    for (size_t i = 0; i < 3; ++i) {
      std::vector<Viewed> candidates = views_of(g, uses, operands[i]);
      for (auto c = candidates.rbegin(); c != candidates.rend(); ++c) {
        std::vector<Viewed> trial = chosen;
        trial[i] = *c;
        if (fits(attention_over(trial[0], trial[1], trial[2]))) {
          chosen[i] = *c;
          break;
        }
      }
    }
    ir::Node attention = attention_over(chosen[0], chosen[1], chosen[2]);
    if (transposed_out) place = *reader;
    g.dead[n] = g.dead[*softmax] = g.dead[*product] = true;
    for (size_t b : between) g.dead[b] = true;
    if (zeroing) g.dead[*zeroing] = true;
    g.nodes[place] = std::move(attention);
    g.dead[place] = false;
    uses = Uses(g);
    ++changed;
  }
  if (changed) g.drop_unread();
  return changed;
}

int transposes_into_attention_views(Graph& g) {
  int changed = 0;
  Uses uses(g);
  for (size_t m = 0; m < g.nodes.size(); ++m) {
    ir::Node& product = g.nodes[m];
    if (g.dead[m] || product.op != OpKind::kFusedMatMul || product.inputs.size() > 3 ||
        g.values[size_t(product.inputs[1])].shape.size() != 2 || uses.sole_reader(product.inputs[0]) != m)
      continue;
    auto t = uses.producer_of(product.inputs[0]);
    if (!t || g.nodes[*t].op != OpKind::kTranspose || !g.nodes[*t].attrs.has("perm")) continue;
    std::vector<int64_t> perm = g.nodes[*t].attrs.get_ints("perm");
    int64_t rank = int64_t(perm.size());
    for (auto& p : perm) p = p < 0 ? p + rank : p;
    if (rank < 2 || perm.back() != rank - 1) continue;  // the product's rows must stay rows
    // Every reader of the product is an Attention node reading it through views.
    ir::ValueId y = product.outputs[0];
    std::vector<size_t> readers;
    bool only_attention = !g.is_output(y);
    for (size_t r = 0; r < g.nodes.size() && only_attention; ++r) {
      if (g.dead[r] || std::find(g.nodes[r].inputs.begin(), g.nodes[r].inputs.end(), y) == g.nodes[r].inputs.end()) continue;
      only_attention = g.nodes[r].op == OpKind::kAttention;
      readers.push_back(r);
    }
    if (!only_attention || readers.empty()) continue;
    // The product of the untransposed rows, and the transpose as the first step of each view.
    std::vector<int64_t> step{int64_t(ir::ViewStep::kTranspose), rank};
    step.insert(step.end(), perm.begin(), perm.end());
    static constexpr const char* kViews[3] = {"q_view", "k_view", "v_view"};
    for (size_t r : readers)
      for (size_t i = 0; i < 3; ++i)
        if (g.nodes[r].inputs[i] == y) {
          std::vector<int64_t> program = step, rest = g.nodes[r].attrs.get_ints(kViews[i]);
          program.insert(program.end(), rest.begin(), rest.end());
          g.nodes[r].attrs.set(kViews[i], program);
        }
    product.inputs[0] = g.nodes[*t].inputs[0];
    g.dead[*t] = true;
    uses = Uses(g);
    ++changed;
  }
  return changed;
}

}  // namespace kiln::builder
