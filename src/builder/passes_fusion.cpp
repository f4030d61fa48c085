// Fusion passes: matmul epilogues (bias, activation, residual) and chains of
// elementwise ops into one FusedElementwise kernel.
#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "graph.h"
#include "kiln/error.h"
#include "kiln/ir/fused.h"
#include "kiln/ir/recurrent.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"

namespace kiln::builder {

using ir::OpKind;

namespace {

const ir::Dim& last_dim(const Graph& g, ir::ValueId v) { return g.values[size_t(v)].shape.back(); }

std::optional<std::string> activation_of(const ir::Node& n) {
  switch (n.op) {
    case OpKind::kRelu: return "relu";
    case OpKind::kSigmoid: return "sigmoid";
    case OpKind::kTanh: return "tanh";
    case OpKind::kGelu: return n.attrs.get_string("approximate", "none") == "tanh" ? "gelu_tanh" : "gelu";
    default: return std::nullopt;
  }
}

// A constant row broadcast along N becomes an [N] bias only up to this size: a
// scalar C must not turn a tiny model into a plan with gigabytes of copies of
// it (it stays an elementwise Add, which broadcasts).
constexpr int64_t kMaxBroadcastBiasBytes = int64_t(1) << 20;
// Half-precision products whose rows (N) are not a multiple of 8 elements ran
// 3-8x slower in cuBLASLt on an H200 than the transposed product Y^T, whose
// rows are Y's row count (GPT-2's LM head, [1024 x 768] @ [768 x 50257]: 840
// against 106 µs; BERT's 30,522 words: 217 against 68 µs), before the
// transpose back. Only wide products gain; the scratch costs as much as Y.
constexpr int64_t kTensorCoreRow = 8, kMinTransposedWidth = 4096;
constexpr int64_t kMaxScratchElements = int64_t(1) << 30;

// Whether a constant row C can be materialized as Gemm's [N] bias.
bool c_materializes_as_bias(const Graph& g, const ir::Node& gemm, ir::ValueId c) {
  const ir::Shape& cs = g.values[size_t(c)].shape;
  const ir::Dim& n = g.values[size_t(gemm.outputs[0])].shape[1];
  bool row = cs.size() == 1 || (cs.size() == 2 && cs[0] == ir::Dim(1));
  if (!row || !g.weight_of(c) || !n.is_constant()) return false;
  return cs.back() == n || n.constant() <= kMaxBroadcastBiasBytes / int64_t(dtype_size(g.values[size_t(c)].dtype));
}

// Whether Gemm's C can ride in FusedMatMul: an [N] bias, a constant row
// (materialized as a bias), or a full [M,N] residual.
bool c_fits_epilogue(const Graph& g, const ir::Node& gemm, ir::ValueId c) {
  const ir::Shape& cs = g.values[size_t(c)].shape;
  const ir::Shape& out = g.values[size_t(gemm.outputs[0])].shape;
  if (cs.size() == 1 && cs.back() == out[1]) return true;
  return c_materializes_as_bias(g, gemm, c) || cs == out;
}

bool is_reshape_like(OpKind op) {
  return op == OpKind::kReshape || op == OpKind::kSqueeze || op == OpKind::kUnsqueeze || op == OpKind::kFlatten;
}

std::optional<std::vector<int64_t>> static_dims(const Graph& g, ir::ValueId v) {
  const ir::Shape& shape = g.values[size_t(v)].shape;
  if (shape.empty() || !ir::shape_is_constant(shape)) return std::nullopt;
  return ir::shape_constants(shape);
}

// Add(reshapes(matmul), other) with other as large as the sum becomes
// reshape(Add(matmul, reshaped other)): the Add can then ride in the matmul's
// residual slot (reshapes are views). Static shapes only.
int move_reshapes_past_residual_adds(Graph& g) {
  int changed = 0;
  Uses uses(g);
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n] || g.nodes[n].op != OpKind::kFusedMatMul) continue;
    ir::ValueId product = g.nodes[n].outputs[0];
    auto product_dims = static_dims(g, product);
    ir::ValueId v = product;
    std::optional<size_t> next = uses.sole_reader(v);
    while (next && is_reshape_like(g.nodes[*next].op) && g.nodes[*next].inputs[0] == v) {
      v = g.nodes[*next].outputs[0];
      next = uses.sole_reader(v);
    }
    if (v == product || !product_dims || !next || g.nodes[*next].op != OpKind::kAdd) continue;
    ir::Node& add = g.nodes[*next];
    ir::ValueId other = add.inputs[0] == v ? add.inputs[1] : add.inputs[0];
    ir::ValueId sum = add.outputs[0];
    if (other == v || g.is_output(sum) || g.values[size_t(other)].shape != g.values[size_t(v)].shape) continue;
    auto sum_dims = static_dims(g, sum);
    if (!sum_dims) continue;
    ir::ValueId other_reshaped = g.add_value(g.values[size_t(other)].name + "_as_product");
    ir::ValueId early_sum = g.add_value(g.values[size_t(sum)].name + "_before_reshape");
    for (ir::ValueId made : {other_reshaped, early_sum}) {  // typed now: the absorption below reads them in this pass
      g.values[size_t(made)].shape = g.values[size_t(product)].shape;
      g.values[size_t(made)].dtype = g.values[size_t(product)].dtype;
    }
    std::string stem = add.name;
    size_t at = *next;
    g.nodes[at] = ir::Node{stem, OpKind::kAdd, {product, other_reshaped}, {early_sum}, {}};
    ir::Node reshape_other{g.unique_name(stem + "_residual_view"), OpKind::kReshape, {other, g.add_ints(g.values[size_t(sum)].name + "_shape", *product_dims)}, {other_reshaped}, {}};
    ir::Node reshape_sum{g.unique_name(stem + "_view"), OpKind::kReshape, {early_sum, g.add_ints(g.values[size_t(sum)].name + "_shape", *sum_dims)}, {sum}, {}};
    g.insert_node(at + 1, std::move(reshape_sum));
    g.insert_node(at, std::move(reshape_other));
    uses = Uses(g);
    ++changed;
  }
  if (changed) g.drop_unread();  // the reshapes of the products
  return changed;
}

}  // namespace

int fuse_matmul_epilogues(Graph& g) {
  int changed = 0;
  // Gemm with transA: A^T becomes its own Transpose so the matmul path below applies.
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n] || g.nodes[n].op != OpKind::kGemm || g.nodes[n].attrs.get_int("transA", 0) == 0) continue;
    ir::ValueId a = g.nodes[n].inputs[0];
    ir::ValueId at = g.add_value(g.values[size_t(a)].name + "_T");
    ir::Node transpose{g.unique_name(g.nodes[n].name + "_transA"), OpKind::kTranspose, {a}, {at}, {}};
    transpose.attrs.set("perm", std::vector<int64_t>{1, 0});
    g.nodes[n].inputs[0] = at;
    g.nodes[n].attrs.erase("transA");
    g.nodes.insert(g.nodes.begin() + long(n), std::move(transpose));
    g.dead.insert(g.dead.begin() + long(n), false);
    ++n;
    ++changed;
  }
  // MatMul / Gemm -> FusedMatMul.
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    ir::Node& node = g.nodes[n];
    bool product = node.op == OpKind::kMatMul || node.op == OpKind::kGemm;  // checked first: some ops have no inputs
    if (g.dead[n] || !product || !is_floating(g.values[size_t(node.inputs[0])].dtype)) continue;
    if (node.op == OpKind::kMatMul) {
      if (g.values[size_t(node.inputs[0])].shape.size() < 2 || g.values[size_t(node.inputs[1])].shape.size() < 2) continue;
      node.op = OpKind::kFusedMatMul;
      ++changed;
    } else if (node.op == OpKind::kGemm) {
      double alpha = node.attrs.get_float("alpha", 1.0), beta = node.attrs.get_float("beta", 1.0);
      ir::ValueId c = node.inputs.size() > 2 ? node.inputs[2] : ir::kNoValue;
      ir::Attributes attrs;
      attrs.set("trans_b", node.attrs.get_int("transB", 0));
      attrs.set("alpha", alpha);
      std::vector<ir::ValueId> inputs{node.inputs[0], node.inputs[1]};
      if (c != ir::kNoValue && (beta != 1.0 || !c_fits_epilogue(g, node, c))) {
        // y = alpha*A@B, then + beta*C as elementwise ops (fused by the next pass).
        ir::ValueId out = node.outputs[0];
        ir::ValueId product = g.add_value(g.values[size_t(out)].name + "_ab");
        node.op = OpKind::kFusedMatMul;
        node.inputs = inputs;
        node.attrs = attrs;
        node.outputs[0] = product;
        ir::ValueId addend = c;
        std::vector<ir::Node> extra;
        if (beta != 1.0) {
          DType dtype = g.values[size_t(c)].dtype;
          ir::ValueId b = g.add_weight(node.name + "_beta", reference::make_tensor(dtype, {}, {beta}));
          addend = g.add_value(g.values[size_t(c)].name + "_scaled");
          extra.push_back(ir::Node{g.unique_name(node.name + "_beta"), OpKind::kMul, {c, b}, {addend}, {}});
        }
        extra.push_back(ir::Node{g.unique_name(node.name + "_c"), OpKind::kAdd, {product, addend}, {out}, {}});
        for (auto& e : extra) {
          g.nodes.insert(g.nodes.begin() + long(++n), std::move(e));
          g.dead.insert(g.dead.begin() + long(n), false);
        }
        ++changed;
        continue;
      }
      if (c != ir::kNoValue) {
        const ir::Shape cs = g.values[size_t(c)].shape;
        const ir::Shape& out = g.values[size_t(node.outputs[0])].shape;
        const ir::Dim& n_dim = out[1];
        if (cs.size() == 1 && cs.back() == n_dim) {
          inputs.push_back(c);  // a bias
        } else if (c_materializes_as_bias(g, node, c)) {  // a constant row, broadcast along M
          std::vector<double> v = ir::read_doubles(*g.weight_of(c));
          std::vector<double> bias(size_t(n_dim.constant()));
          for (size_t i = 0; i < bias.size(); ++i) bias[i] = v[v.size() == 1 ? 0 : i];
          DType dtype = g.values[size_t(c)].dtype;
          std::string stem = g.values[size_t(c)].name;
          inputs.push_back(g.add_weight(stem + "_bias", reference::make_tensor(dtype, {n_dim.constant()}, bias)));
        } else {
          inputs.push_back(ir::kNoValue);
          inputs.push_back(c);  // a full [M,N] addend: the residual slot
        }
      }
      node.op = OpKind::kFusedMatMul;
      node.inputs = inputs;
      node.attrs = attrs;
      ++changed;
    }
  }
  changed += move_reshapes_past_residual_adds(g);
  // Absorb bias, activation and residual that follow.
  Uses uses(g);
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n] || g.nodes[n].op != OpKind::kFusedMatMul) continue;
    for (;;) {
      ir::Node& mm = g.nodes[n];
      ir::ValueId out = mm.outputs[0];
      auto next = uses.sole_reader(out);
      if (!next || g.values[size_t(out)].shape.empty()) break;  // no shape yet: made by this pass, absorb next build
      ir::Node& user = g.nodes[*next];
      bool has_bias = mm.inputs.size() > 2 && mm.inputs[2] != ir::kNoValue;
      bool has_residual = mm.inputs.size() > 3;
      std::string act = mm.attrs.get_string("activation", "none");
      bool absorbed = false;
      if (user.op == OpKind::kAdd && !has_residual) {
        ir::ValueId other = user.inputs[0] == out ? user.inputs[1] : user.inputs[0];
        const auto& os = g.values[size_t(other)].shape;
        if (user.inputs[0] == user.inputs[1]) break;
        if (!has_bias && act == "none" && os.size() == 1 && os[0] == last_dim(g, out)) {
          mm.inputs.resize(3, ir::kNoValue);
          mm.inputs[2] = other;
          absorbed = true;
        } else if (os == g.values[size_t(out)].shape) {
          mm.inputs.resize(4, ir::kNoValue);
          mm.inputs[3] = other;
          absorbed = true;
        }
      } else if (auto a = activation_of(user); a && act == "none" && !has_residual) {
        mm.attrs.set("activation", *a);
        absorbed = true;
      }
      if (!absorbed) break;
      for (ir::ValueId v : user.inputs) uses.reader_moved(v, *next, n);
      uses.produced_by(user.outputs[0], n);
      mm.outputs[0] = user.outputs[0];
      g.dead[*next] = true;
      ++changed;
    }
  }
  return changed;
}

namespace {

bool fusable(const Graph& g, const ir::Node& node) {
  if (!ir::is_fusable_elementwise(node.op) || node.outputs.size() != 1) return false;
  const Graph::Value& out = g.values[size_t(node.outputs[0])];
  if (!is_floating(out.dtype)) return false;
  for (ir::ValueId v : node.inputs) {
    if (v == ir::kNoValue) return false;  // Clip without min: keep it simple
    DType d = g.values[size_t(v)].dtype;
    if (d != out.dtype && !(d == DType::kBool && node.op == OpKind::kWhere)) return false;
  }
  if (node.op == OpKind::kClip && (node.attrs.has("min") || node.attrs.has("max"))) return false;
  return true;
}

}  // namespace

int fold_scales_into_matmul(Graph& g) {
  int changed = 0;
  Uses uses(g);
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n] || g.nodes[n].op != OpKind::kFusedMatMul) continue;
    for (size_t operand = 0; operand < 2; ++operand) {
      ir::ValueId in = g.nodes[n].inputs[operand];
      std::optional<size_t> producer = uses.producer_of(in);
      if (!producer || g.nodes[*producer].op != OpKind::kMul || uses.sole_reader(in) != n) continue;
      const ir::Node& mul = g.nodes[*producer];
      for (size_t k = 0; k < 2; ++k) {
        const ir::TensorData* scale = g.weight_of(mul.inputs[k]);
        ir::ValueId other = mul.inputs[1 - k];
        if (!scale || scale->numel() != 1 || !is_floating(scale->dtype) || g.values[size_t(other)].shape != g.values[size_t(in)].shape ||
            g.values[size_t(other)].dtype != g.values[size_t(in)].dtype)
          continue;
        double alpha = g.nodes[n].attrs.get_float("alpha", 1.0) * ir::read_doubles(*scale)[0];
        g.nodes[n].attrs.set("alpha", alpha);
        g.nodes[n].inputs[operand] = other;
        g.dead[*producer] = true;
        uses = Uses(g);
        ++changed;
        break;
      }
    }
  }
  return changed;
}

int fold_transposes_into_matmul(Graph& g) {
  int changed = 0;
  Uses uses(g);
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n] || g.nodes[n].op != OpKind::kFusedMatMul || g.nodes[n].attrs.get_int("trans_b", 0) != 0) continue;
    ir::ValueId b = g.nodes[n].inputs[1];
    auto p = uses.producer_of(b);
    if (uses.sole_reader(b) != n || !p || g.nodes[*p].op != OpKind::kTranspose) continue;
    const ir::Node& t = g.nodes[*p];
    size_t rank = g.values[size_t(t.inputs[0])].shape.size();
    if (rank < 2) continue;
    std::vector<int64_t> swap_last(rank);
    for (size_t i = 0; i < rank; ++i) swap_last[i] = int64_t(i);
    std::swap(swap_last[rank - 2], swap_last[rank - 1]);
    std::vector<int64_t> perm = t.attrs.get_ints("perm");
    if (perm.empty())  // the default reverses the dims
      for (size_t i = 0; i < rank; ++i) perm.push_back(int64_t(rank - 1 - i));
    if (perm != swap_last) continue;
    g.nodes[n].inputs[1] = t.inputs[0];
    g.nodes[n].attrs.set("trans_b", int64_t(1));
    g.dead[*p] = true;
    uses = Uses(g);
    ++changed;
  }
  return changed;
}

int untranspose_matmul_weights(Graph& g) {
  int changed = 0;
  Uses uses(g);
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    ir::Node& node = g.nodes[n];
    if (g.dead[n] || node.op != OpKind::kFusedMatMul || node.attrs.get_int("trans_b", 0) == 0) continue;
    ir::ValueId b = node.inputs[1];
    const ir::TensorData* w = g.weight_of(b);
    if (!w || w->dims.size() != 2 || uses.sole_reader(b) != n) continue;
    // [N, K] -> [K, N], element by element whatever the type.
    int64_t rows = w->dims[0], cols = w->dims[1];
    size_t size = dtype_size(w->dtype);
    std::vector<std::byte> bytes(w->data.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        std::memcpy(&bytes[size_t(c * rows + r) * size], w->data.data() + size_t(r * cols + c) * size, size);
    ir::TensorData t;
    t.dtype = w->dtype;
    t.dims = {cols, rows};
    t.data = Buffer::from_bytes(std::move(bytes));
    std::string stem = g.values[size_t(b)].name + "_T";
    node.inputs[1] = g.add_weight(stem, std::move(t));
    node.attrs.set("trans_b", int64_t(0));
    ++changed;
  }
  return changed;
}

int scratch_for_transposed_products(Graph& g) {
  ir::SymbolBindings largest;
  for (auto& [symbol, range] : g.ranges) largest[symbol] = range.max;
  int changed = 0;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    ir::Node& node = g.nodes[n];
    if (g.dead[n] || node.op != OpKind::kFusedMatMul || node.outputs.size() != 1 || node.inputs.size() != 2 ||
        node.attrs.get_string("activation", "none") != "none")
      continue;
    const Graph::Value& y = g.values[size_t(node.outputs[0])];
    if ((y.dtype != DType::kFloat16 && y.dtype != DType::kBFloat16) || y.shape.size() < 2 ||
        g.values[size_t(node.inputs[1])].shape.size() != 2)
      continue;
    std::optional<int64_t> width = y.shape.back().evaluate({});
    std::optional<int64_t> elements = ir::shape_numel(y.shape).evaluate(largest);
    if (!width || *width % kTensorCoreRow == 0 || *width < kMinTransposedWidth || !elements ||
        *elements > kMaxScratchElements)
      continue;
    ir::ValueId scratch = g.add_value(y.name + "_transposed");
    node.outputs.push_back(scratch);
    ++changed;
  }
  return changed;
}

int scratch_for_recurrent_layers(Graph& g) {
  int changed = 0;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    ir::Node& node = g.nodes[n];
    if (g.dead[n] || ir::family_of(node.op) != ir::OpFamily::kRecurrent) continue;
    DType dtype = g.values[size_t(node.inputs[0])].dtype;
    size_t outputs = ir::recurrent_outputs(node.op);
    if ((dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16) || node.outputs.size() > outputs) continue;
    node.outputs.resize(outputs, ir::kNoValue);
    node.outputs.push_back(g.add_value(node.name + "_scratch"));
    ++changed;
  }
  return changed;
}

int fuse_elementwise(Graph& g) {
  // Group each fusable node with the node that solely consumes it; a group is a
  // tree rooted at the node whose output leaves it.
  // Readers are counted once up front: asking the graph per node is quadratic
  // on long chains.
  size_t count = g.nodes.size();
  std::vector<int> reads = g.read_counts();
  std::vector<size_t> reader(g.values.size());
  for (size_t n = 0; n < count; ++n)
    if (!g.dead[n])
      for (ir::ValueId v : g.nodes[n].inputs)
        if (v != ir::kNoValue) reader[size_t(v)] = n;
  for (ir::ValueId v : g.outputs) reads[size_t(v)] = -1;  // leaves the group
  std::vector<size_t> root(count);
  std::vector<bool> in_group(count, false);
  // Per root: instructions so far, and an upper bound on the group's external
  // inputs (a member adds its inputs and turns one of its reader's into an
  // internal edge), so no group outgrows what one kernel takes.
  std::vector<int> instructions(count, 0), inputs(count, 0);
  for (size_t n = count; n-- > 0;) {  // consumers first: a consumer's root is settled before its producers join
    root[n] = n;
    if (g.dead[n] || !fusable(g, g.nodes[n])) continue;
    in_group[n] = true;
    ir::ValueId out = g.nodes[n].outputs[0];
    int own_inputs = int(g.nodes[n].inputs.size());
    if (reads[size_t(out)] == 1 && in_group[reader[size_t(out)]]) {
      size_t r = root[reader[size_t(out)]];
      if (instructions[r] < ir::kFusedMaxInstructions && inputs[r] - 1 + own_inputs <= ir::kFusedMaxInputs) {
        root[n] = r;
        ++instructions[r];
        inputs[r] += own_inputs - 1;
        continue;
      }
    }
    instructions[n] = 1;
    inputs[n] = own_inputs;
  }
  std::map<size_t, std::vector<size_t>> groups;
  for (size_t n = 0; n < count; ++n)
    if (in_group[n]) groups[root[n]].push_back(n);  // members in topological order, root last
  int changed = 0;
  for (auto& [r, members] : groups) {
    ir::Node fused;
    fused.name = g.nodes[r].name;
    fused.op = OpKind::kFusedElementwise;
    fused.outputs = g.nodes[r].outputs;
    std::map<ir::ValueId, int> operand;  // value -> operand index
    std::vector<ir::FusedInstruction> program;
    size_t n_inputs = 0;
    // First pass: external inputs get the low operand numbers.
    std::set<ir::ValueId> produced;
    for (size_t m : members) produced.insert(g.nodes[m].outputs[0]);
    for (size_t m : members)
      for (ir::ValueId v : g.nodes[m].inputs)
        if (!produced.count(v) && !operand.count(v)) {
          operand[v] = int(n_inputs++);
          fused.inputs.push_back(v);
        }
    for (size_t m : members) {
      ir::FusedInstruction in = ir::instruction_from_node(g.nodes[m]);
      for (size_t a = 0; a < g.nodes[m].inputs.size(); ++a) in.args[a] = operand.at(g.nodes[m].inputs[a]);
      operand[g.nodes[m].outputs[0]] = int(n_inputs + program.size());
      program.push_back(in);
      g.dead[m] = true;
    }
    ir::encode_fused_program(program, fused.attrs);
    g.nodes[r] = std::move(fused);
    g.dead[r] = false;
    changed += int(members.size());
  }
  return changed;
}

}  // namespace kiln::builder
