// Layout passes. Half-precision convolutions run channels-last, the layout
// cuDNN's tensor-core kernels read: channels-first tensors cost them a layout
// transform of input and weight before, and of the output after, every Conv.
// The transposes this puts around each Conv then move forward through
// elementwise ops until they meet their inverse and cancel, so a stack of
// convolutions keeps its activations channels-last from one Conv to the next.
#include <algorithm>
#include <numeric>

#include "graph.h"
#include "kiln/ir/fused.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"

namespace kiln::builder {

using ir::OpKind;

namespace {

ir::Node transpose_node(Graph& g, const std::string& stem, ir::ValueId in, ir::ValueId out, const std::vector<int64_t>& perm) {
  ir::Node t{g.unique_name(stem), OpKind::kTranspose, {in}, {out}, {}};
  t.attrs.set("perm", perm);
  return t;
}

std::vector<int64_t> perm_of(const Graph& g, const ir::Node& t) {
  size_t rank = g.values[size_t(t.inputs[0])].shape.size();
  std::vector<int64_t> perm(rank);
  std::iota(perm.rbegin(), perm.rend(), 0);  // the default reverses the dims
  perm = t.attrs.get_ints("perm", perm);
  for (auto& p : perm)
    if (p < 0) p += int64_t(perm.size());
  return perm;
}

bool is_identity(const std::vector<int64_t>& perm) {
  for (size_t i = 0; i < perm.size(); ++i)
    if (perm[i] != int64_t(i)) return false;
  return true;
}

// A constant operand c of an op whose other operand is Transpose(perm)(a):
// the constant to use with a instead, so that Transpose(perm)(op(a, c')) equals
// op(Transpose(perm)(a), c). c is first given the full rank (leading 1s).
ir::TensorData untranspose_constant(const ir::TensorData& c, const std::vector<int64_t>& perm) {
  ir::TensorData full = c;  // shares the bytes
  full.dims.insert(full.dims.begin(), perm.size() - c.dims.size(), 1);
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inverse[size_t(perm[i])] = int64_t(i);
  return reference::permute(full, inverse);
}

bool broadcasting_binary(OpKind op) {
  switch (op) {
    case OpKind::kAdd: case OpKind::kSub: case OpKind::kMul: case OpKind::kDiv: case OpKind::kPow: case OpKind::kMin:
    case OpKind::kMax:
      return true;
    default: return false;
  }
}

// Transpose t followed by a Transpose that undoes it: the second one's readers
// read t's input. True if it rewrote something.
bool cancel_inverse(Graph& g, size_t t) {
  ir::ValueId in = g.nodes[t].inputs[0], out = g.nodes[t].outputs[0];
  std::vector<int64_t> perm = perm_of(g, g.nodes[t]);
  for (size_t u : g.consumers(out)) {
    const ir::Node& next = g.nodes[u];
    if (next.op != OpKind::kTranspose || g.is_output(next.outputs[0])) continue;
    std::vector<int64_t> second = perm_of(g, next), composed;
    for (int64_t p : second) composed.push_back(perm[size_t(p)]);
    if (!is_identity(composed)) continue;
    g.dead[u] = true;
    g.replace_uses(next.outputs[0], in);
    return true;
  }
  return false;
}

// Transpose t read only by op c: c reads t's input (and, for a binary op, the
// other operand untransposed) and the Transpose moves after c. True if it did.
bool move_past_reader(Graph& g, size_t t) {
  ir::ValueId in = g.nodes[t].inputs[0], out = g.nodes[t].outputs[0];
  std::vector<int64_t> perm = perm_of(g, g.nodes[t]);
  auto reader = g.only_reader(out);
  if (!reader) return false;
  size_t c = *reader;
  ir::Node& node = g.nodes[c];
  if (node.outputs.empty() || (node.outputs.size() > 1 && node.outputs[1] != ir::kNoValue)) return false;
  std::vector<size_t> also_dead;
  ir::Node replacement = node;
  if (ir::is_fusable_elementwise(node.op) && node.inputs.size() == 1) {
    replacement.inputs[0] = in;
  } else if (broadcasting_binary(node.op) && node.inputs.size() == 2) {
    for (size_t i = 0; i < 2; ++i) {
      ir::ValueId operand = node.inputs[i];
      if (operand == out) {
        replacement.inputs[i] = in;
        continue;
      }
      const ir::TensorData* constant = g.weight_of(operand);
      if (constant && constant->dims.size() <= perm.size()) {
        replacement.inputs[i] = g.add_weight(g.values[size_t(operand)].name + "_relayout", untranspose_constant(*constant, perm));
        continue;
      }
      auto other = g.producer_of(operand);
      if (!other || g.nodes[*other].op != OpKind::kTranspose || perm_of(g, g.nodes[*other]) != perm || g.only_reader(operand) != c)
        return false;
      replacement.inputs[i] = g.nodes[*other].inputs[0];
      also_dead.push_back(*other);
    }
  } else if (node.op == OpKind::kMaxPool && perm == ir::to_channels_first_perm(perm.size()) && ir::is_plain_pool_window(node) &&
             is_floating(g.values[size_t(in)].dtype)) {
    replacement.op = OpKind::kMaxPoolChannelsLast;
    replacement.inputs[0] = in;
    replacement.outputs.resize(1);
    replacement.attrs.erase("storage_order");  // it orders the Indices output, which is not wanted
  } else if ((node.op == OpKind::kGlobalAveragePool || node.op == OpKind::kGlobalMaxPool) &&
             perm == ir::to_channels_first_perm(perm.size()) && perm.size() >= 3) {
    // Pooling channels-last dims 1..rank-2 keeps them as 1s: [N, 1.., C].
    std::vector<int64_t> axes(perm.size() - 2);
    std::iota(axes.begin(), axes.end(), 1);
    replacement.op = node.op == OpKind::kGlobalAveragePool ? OpKind::kReduceMean : OpKind::kReduceMax;
    replacement.inputs = {in, g.add_ints(node.name + "_axes", axes)};
    replacement.attrs = {};
    replacement.attrs.set("keepdims", int64_t(1));
  } else {
    return false;
  }
  ir::ValueId result = node.outputs[0];
  ir::ValueId moved = g.add_value(g.values[size_t(result)].name + "_pre_transpose");
  replacement.outputs[0] = moved;
  std::string stem = g.nodes[t].name;
  g.nodes[c] = std::move(replacement);
  g.dead[t] = true;
  for (size_t d : also_dead) g.dead[d] = true;
  g.insert_node(c + 1, transpose_node(g, stem, moved, result, perm));
  return true;
}

}  // namespace

// A patch embedding is a GEMM over non-overlapping windows: cut the image
// into patches (a reshape and a transpose), multiply by the weight seen as
// [C*kh*kw, K], and put the channels back in front. At small batch cuBLASLt
// runs that GEMM several times faster than an implicit-GEMM convolution, and
// the transposes around it usually fold into the model's own flatten.
int patch_convs_to_matmul(Graph& g) {
  int changed = 0;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n] || g.nodes[n].op != OpKind::kConv) continue;
    const ir::Node& conv = g.nodes[n];
    ir::ValueId x = conv.inputs[0], y = conv.outputs[0];
    ir::ValueId bias = conv.inputs.size() > 2 ? conv.inputs[2] : ir::kNoValue;
    const ir::TensorData* weight = g.weight_of(conv.inputs[1]);
    const ir::Shape& xs = g.values[size_t(x)].shape;
    if (!weight || weight->dims.size() != 4 || xs.size() != 4 || !is_floating(g.values[size_t(x)].dtype)) continue;
    int64_t k = weight->dims[0], c = weight->dims[1], kh = weight->dims[2], kw = weight->dims[3];
    if (kh * kw < 16 || conv.attrs.get_int("group", 1) != 1) continue;
    std::string auto_pad = conv.attrs.get_string("auto_pad", "NOTSET");
    if ((auto_pad != "NOTSET" && auto_pad != "VALID") || conv.attrs.get_ints("strides", {1, 1}) != std::vector<int64_t>{kh, kw} ||
        conv.attrs.get_ints("dilations", {1, 1}) != std::vector<int64_t>{1, 1})
      continue;
    std::vector<int64_t> pads = conv.attrs.get_ints("pads", {0, 0, 0, 0});
    if (std::any_of(pads.begin(), pads.end(), [](int64_t p) { return p != 0; })) continue;
    if (!xs[1].is_constant() || xs[1].constant() != c || !xs[2].is_constant() || !xs[3].is_constant()) continue;
    int64_t h = xs[2].constant(), w = xs[3].constant();
    if (h % kh || w % kw) continue;
    int64_t ph = h / kh, pw = w / kw;

    std::string stem = conv.name;
    ir::TensorData matrix = reference::permute(*weight, {1, 2, 3, 0});  // [C, kh, kw, K]
    matrix.dims = {c * kh * kw, k};
    ir::ValueId weight_matrix = g.add_weight(stem + "_weight_matrix", std::move(matrix));
    auto reshape = [&](const std::string& name, ir::ValueId in, ir::ValueId out, const std::vector<int64_t>& dims) {
      return ir::Node{g.unique_name(stem + name), OpKind::kReshape, {in, g.add_ints(stem + name + "_shape", dims)}, {out}, {}};
    };
    ir::ValueId windows = g.add_value(stem + "_windows"), patches6 = g.add_value(stem + "_patches6");
    ir::ValueId patches = g.add_value(stem + "_patches"), product = g.add_value(stem + "_product");
    ir::ValueId grid = g.add_value(stem + "_grid");
    std::vector<ir::Node> lowered;
    lowered.push_back(reshape("_windows", x, windows, {0, c, ph, kh, pw, kw}));  // 0: the batch dim as it is
    lowered.push_back(transpose_node(g, stem + "_patches_last", windows, patches6, {0, 2, 4, 1, 3, 5}));
    lowered.push_back(reshape("_patch_rows", patches6, patches, {0, ph * pw, c * kh * kw}));
    lowered.push_back(ir::Node{g.unique_name(stem + "_matmul"), OpKind::kMatMul, {patches, weight_matrix}, {product}, {}});
    if (bias != ir::kNoValue) {
      ir::ValueId biased = g.add_value(stem + "_biased");
      lowered.push_back(ir::Node{g.unique_name(stem + "_bias"), OpKind::kAdd, {product, bias}, {biased}, {}});
      product = biased;
    }
    lowered.push_back(reshape("_grid", product, grid, {0, ph, pw, k}));
    lowered.push_back(transpose_node(g, stem + "_channels_first", grid, y, {0, 3, 1, 2}));
    g.dead[n] = true;
    for (size_t i = 0; i < lowered.size(); ++i) g.insert_node(n + 1 + i, std::move(lowered[i]));
    n += lowered.size();
    ++changed;
  }
  return changed;
}

int convs_to_channels_last(Graph& g, DType compute) {
  if (compute != DType::kFloat16 && compute != DType::kBFloat16) return 0;
  int changed = 0;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n] || g.nodes[n].op != OpKind::kConv) continue;
    ir::ValueId x = g.nodes[n].inputs[0], w = g.nodes[n].inputs[1], y = g.nodes[n].outputs[0];
    size_t rank = g.values[size_t(x)].shape.size();
    // Ungrouped 2-D convolutions that cuDNN runs (the runtime's other Conv kernel
    // is channels-first only). cuDNN 9.14 rejects some grouped fp16 channels-last
    // convolutions at run time (CUDNN_STATUS_BAD_PARAM for a depthwise one), so
    // grouped Convs stay channels-first.
    if (rank != 4 || g.values[size_t(w)].shape.size() != rank || !is_floating(g.values[size_t(x)].dtype) ||
        !ir::has_symmetric_explicit_pads(g.nodes[n]) || g.nodes[n].attrs.get_int("group", 1) != 1)
      continue;
    std::vector<int64_t> to_last = ir::to_channels_last_perm(rank), to_first = ir::to_channels_first_perm(rank);
    std::string stem = g.nodes[n].name;
    ir::ValueId x_last = g.add_value(g.values[size_t(x)].name + "_channels_last");
    ir::ValueId w_last = g.add_value(g.values[size_t(w)].name + "_channels_last");
    ir::ValueId y_last = g.add_value(g.values[size_t(y)].name + "_channels_last");
    ir::Node& conv = g.nodes[n];
    conv.op = OpKind::kConvChannelsLast;
    conv.inputs[0] = x_last;
    conv.inputs[1] = w_last;
    conv.outputs[0] = y_last;
    g.insert_node(n + 1, transpose_node(g, stem + "_to_channels_first", y_last, y, to_first));
    g.insert_node(n, transpose_node(g, stem + "_weight_to_channels_last", w, w_last, to_last));
    g.insert_node(n, transpose_node(g, stem + "_to_channels_last", x, x_last, to_last));
    n += 3;
    ++changed;
  }
  return changed;
}

int sink_transposes(Graph& g) {
  // Only the layout transposes of channels-last Convs move: other transposes
  // are left where passes like fold_transposes_into_matmul look for them.
  if (std::none_of(g.nodes.begin(), g.nodes.end(), [](const ir::Node& n) { return n.op == OpKind::kConvChannelsLast; })) return 0;
  const std::vector<int64_t> to_first = ir::to_channels_first_perm(4);
  int changed = 0;
  // Every rewrite removes a Transpose or moves one later in the (finite,
  // acyclic) graph, so this ends.
  for (bool again = true; again;) {
    again = false;
    for (size_t n = 0; n < g.nodes.size() && !again; ++n) {
      if (g.dead[n] || g.nodes[n].op != OpKind::kTranspose) continue;
      again = cancel_inverse(g, n) || (perm_of(g, g.nodes[n]) == to_first && move_past_reader(g, n));
    }
    changed += again;
  }
  g.drop_unread();  // Transposes whose readers all went elsewhere
  return changed;
}

int conv_bias_into_elementwise(Graph& g) {
  // A Conv's bias becomes an Add after it; the Adds are inserted in one sweep
  // at the end (one insertion per Conv shifts every later node), and readers
  // come from one index: no rewrite changes who reads a later Conv's output.
  Uses uses(g);
  auto bias_add = [&](size_t n) -> std::optional<ir::Node> {
    ir::Node& conv = g.nodes[n];
    if (g.dead[n] || (conv.op != OpKind::kConv && conv.op != OpKind::kConvChannelsLast) || conv.inputs.size() < 3 ||
        conv.inputs[2] == ir::kNoValue)
      return std::nullopt;
    const ir::TensorData* bias = g.weight_of(conv.inputs[2]);
    ir::ValueId y = conv.outputs[0];
    auto reader = uses.only_reader(y);
    if (!bias || !reader || !ir::is_fusable_elementwise(g.nodes[*reader].op)) return std::nullopt;
    // Channels-first output [N, M, spatial...] needs the bias as [M, 1, ...].
    std::vector<int64_t> dims{bias->dims.at(0)};
    if (conv.op == OpKind::kConv) dims.resize(g.values[size_t(y)].shape.size() - 1, 1);
    ir::TensorData shaped = *bias;  // the same bytes, viewed with trailing 1s
    shaped.dims = dims;
    ir::ValueId b = g.add_weight(g.values[size_t(conv.inputs[2])].name + "_broadcast", std::move(shaped));
    ir::ValueId product = g.add_value(g.values[size_t(y)].name + "_without_bias");
    conv.inputs.resize(2);
    conv.outputs[0] = product;
    return ir::Node{g.unique_name(conv.name + "_bias"), OpKind::kAdd, {product, b}, {y}, {}};
  };
  int changed = 0;
  std::vector<ir::Node> nodes;
  std::vector<bool> dead;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    std::optional<ir::Node> add = bias_add(n);
    nodes.push_back(std::move(g.nodes[n]));
    dead.push_back(g.dead[n]);
    if (!add) continue;
    nodes.push_back(std::move(*add));
    dead.push_back(false);
    ++changed;
  }
  g.nodes = std::move(nodes);
  g.dead = std::move(dead);
  return changed;
}

}  // namespace kiln::builder
