// Precision: computes in fp16/bf16 while the network keeps its float32
// inputs and outputs (casts at the edges). Weights are converted once here.
#include <set>

#include "graph.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"

namespace kiln::builder {

using ir::OpKind;

int convert_precision(Graph& g, DType to) {
  if (to == DType::kFloat32) return 0;
  int changed = 0;
  std::vector<bool> was_float32(g.values.size());
  for (size_t v = 0; v < g.values.size(); ++v) was_float32[v] = g.values[v].dtype == DType::kFloat32;
  // Float weights that describe geometry, not data (Resize roi and scales, MelWeightMatrix's edge
  // frequencies), keep float32: 5 * 1.6 must stay 8, not 7.998, and 7999 Hz not become 8000.
  std::set<ir::ValueId> geometry;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n]) continue;
    const ir::Node& node = g.nodes[n];
    if (node.op == OpKind::kResize)
      for (size_t i = 1; i < 3 && i < node.inputs.size(); ++i) geometry.insert(node.inputs[i]);
    if (node.op == OpKind::kMelWeightMatrix)
      for (size_t i = 3; i < node.inputs.size(); ++i) geometry.insert(node.inputs[i]);
  }
  for (size_t id = 0; id < g.values.size(); ++id) {
    auto& v = g.values[id];
    if (v.weight && v.weight->dtype == DType::kFloat32 && !geometry.count(ir::ValueId(id))) {
      v.weight = reference::make_tensor(to, v.weight->dims, ir::read_doubles(*v.weight));
      v.dtype = to;
      ++changed;
    }
  }
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    ir::Node& node = g.nodes[n];
    if (g.dead[n]) continue;
    if (node.op == OpKind::kCast && node.attrs.get_int("to", -1) == int64_t(DType::kFloat32)) {
      node.attrs.set("to", int64_t(to));
      ++changed;
    }
    bool makes_floats = node.op == OpKind::kHannWindow || node.op == OpKind::kHammingWindow || node.op == OpKind::kBlackmanWindow ||
                        node.op == OpKind::kMelWeightMatrix;
    if (makes_floats && node.attrs.get_int("output_datatype", int64_t(DType::kFloat32)) == int64_t(DType::kFloat32)) {
      node.attrs.set("output_datatype", int64_t(to));
      ++changed;
    }
    // Random ops that name float32 (RandomUniform and RandomNormal by default): their numbers, rounded to `to`.
    bool random = node.op == OpKind::kRandomUniform || node.op == OpKind::kRandomNormal || node.op == OpKind::kRandomUniformLike ||
                  node.op == OpKind::kRandomNormalLike || node.op == OpKind::kBernoulli;
    bool float32_by_default = node.op == OpKind::kRandomUniform || node.op == OpKind::kRandomNormal;
    if (random && node.attrs.get_int("dtype", float32_by_default ? int64_t(DType::kFloat32) : -1) == int64_t(DType::kFloat32)) {
      node.attrs.set("dtype", int64_t(to));
      ++changed;
    }
    if (node.op == OpKind::kConstantOfShape) {
      const ir::TensorData* value = node.attrs.get_tensor("value");
      if (value && value->dtype == DType::kFloat32) {
        node.attrs.set("value", reference::make_tensor(to, value->dims, ir::read_doubles(*value)));
        ++changed;
      }
    }
  }
  // Subgraphs keep their float32 types: control-flow nodes read float32 and
  // their float32 outputs are cast down for the nodes after them.
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n] || ir::family_of(g.nodes[n].op) != ir::OpFamily::kControlFlow) continue;
    std::vector<ir::Node> before, after;
    for (ir::ValueId& in : g.nodes[n].inputs) {
      if (in == ir::kNoValue || !was_float32[size_t(in)]) continue;
      ir::ValueId high = g.add_value(g.values[size_t(in)].name + "_float32");
      ir::Node cast{g.unique_name("cast_to_subgraph"), OpKind::kCast, {in}, {high}, {}};
      cast.attrs.set("to", int64_t(DType::kFloat32));
      before.push_back(std::move(cast));
      in = high;
    }
    for (ir::ValueId& out : g.nodes[n].outputs) {
      if (out == ir::kNoValue || !was_float32[size_t(out)]) continue;
      ir::ValueId high = g.add_value(g.values[size_t(out)].name + "_float32");
      ir::Node cast{g.unique_name("cast_from_subgraph"), OpKind::kCast, {high}, {out}, {}};
      cast.attrs.set("to", int64_t(to));
      after.push_back(std::move(cast));
      out = high;
    }
    changed += int(before.size() + after.size());
    for (size_t i = 0; i < after.size(); ++i) g.insert_node(n + 1 + i, std::move(after[i]));
    for (size_t i = 0; i < before.size(); ++i) g.insert_node(n + i, std::move(before[i]));
    n += before.size() + after.size();
  }
  // Cast float32 inputs down on entry and float32 outputs back up on exit.
  std::vector<ir::Node> entry;
  for (ir::ValueId in : g.inputs) {
    if (g.values[size_t(in)].dtype != DType::kFloat32) continue;
    ir::ValueId low = g.add_value(g.values[size_t(in)].name + "_" + std::string(dtype_name(to)));
    g.replace_uses(in, low);
    ir::Node cast{g.unique_name("cast_in"), OpKind::kCast, {in}, {low}, {}};
    cast.attrs.set("to", int64_t(to));
    entry.push_back(std::move(cast));
  }
  for (ir::ValueId& out : g.outputs) {
    if (g.values[size_t(out)].dtype != DType::kFloat32 || g.values[size_t(out)].is_input) continue;
    // The producer now writes a low-precision value; a cast writes the original output.
    ir::ValueId low = g.add_value(g.values[size_t(out)].name + "_" + std::string(dtype_name(to)));
    for (size_t n = 0; n < g.nodes.size(); ++n)
      for (auto& o : g.nodes[n].outputs)
        if (o == out && !g.dead[n]) o = low;
    for (size_t n = 0; n < g.nodes.size(); ++n)
      for (auto& i : g.nodes[n].inputs)
        if (i == out && !g.dead[n]) i = low;
    ir::Node cast{g.unique_name("cast_out"), OpKind::kCast, {low}, {out}, {}};
    cast.attrs.set("to", int64_t(DType::kFloat32));
    g.nodes.push_back(std::move(cast));
    g.dead.push_back(false);
    ++changed;
  }
  g.nodes.insert(g.nodes.begin(), entry.begin(), entry.end());
  g.dead.insert(g.dead.begin(), entry.size(), false);
  return changed + int(entry.size());
}

}  // namespace kiln::builder
