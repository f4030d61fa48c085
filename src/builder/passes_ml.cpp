// ai.onnx.ml ops the GPU runs as ops it has kernels for: Binarizer as
// Greater and Cast, ArrayFeatureExtractor of constant indices as Gather.
#include <algorithm>
#include <cmath>
#include <optional>

#include "graph.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"

namespace kiln::builder {

using ir::OpKind;

namespace {

// The threshold t' of x's dtype with x > t' exactly when x > t for every x of
// that dtype: the largest value not above t (t's float32 rounding, stepped
// down if it rounded up; floor(t) for integers). nullopt when t lies below an
// integer type's range (every x is above it and no value of the type says so).
std::optional<double> threshold_in(DType dtype, double t) {
  if (dtype == DType::kFloat64) return t;
  if (dtype == DType::kFloat32) {
    float f = float(t);
    return double(f) > t ? double(std::nextafter(f, -INFINITY)) : double(f);
  }
  double lowest = dtype == DType::kInt32 ? -2147483648.0 : -9223372036854775808.0;
  if (std::floor(t) < lowest) return std::nullopt;
  return std::floor(t);  // above the type's range, make_tensor saturates to its largest value, which no x passes
}

}  // namespace

int lower_ml_ops(Graph& g) {
  int changed = 0;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n] || (g.nodes[n].op != OpKind::kBinarizer && g.nodes[n].op != OpKind::kArrayFeatureExtractor)) continue;
    ir::Node node = g.nodes[n];
    const Graph::Value x = g.values[size_t(node.inputs[0])];  // a copy: adding values below moves them
    std::vector<ir::Node> added;
    if (node.op == OpKind::kBinarizer) {
      std::optional<double> t = threshold_in(x.dtype, node.attrs.get_float("threshold", 0.0));
      if (!t) continue;  // left to the CPU device
      ir::ValueId threshold = g.add_weight(node.name + "_threshold", reference::make_tensor(x.dtype, {}, {*t}));
      ir::ValueId above = g.add_value(node.name + "_above");
      added.push_back(ir::Node{g.unique_name(node.name + "_greater"), OpKind::kGreater, {node.inputs[0], threshold}, {above}, {}});
      ir::Attributes to;
      to.set("to", int64_t(x.dtype));
      added.push_back(ir::Node{g.unique_name(node.name + "_cast"), OpKind::kCast, {above}, {node.outputs[0]}, to});
    } else {
      const ir::TensorData* indices = g.weight_of(node.inputs[1]);
      const ir::Dim& last = x.shape.back();
      if (!indices || is_string(x.dtype) || !last.is_constant()) continue;  // the node's own kernel checks them per run
      std::vector<int64_t> picked = ir::read_ints(*indices);
      bool inside = std::all_of(picked.begin(), picked.end(), [&](int64_t i) { return i >= 0 && i < last.constant(); });
      if (!inside) continue;  // the node reports the index out of range (either device, before anything runs on the GPU)
      ir::Attributes axis;
      axis.set("axis", int64_t(-1));
      ir::ValueId flat = g.add_ints(node.name + "_indices", picked);
      ir::ValueId gathered = x.shape.size() == 1 ? g.add_value(node.name + "_gathered") : node.outputs[0];
      added.push_back(ir::Node{g.unique_name(node.name + "_gather"), OpKind::kGather, {node.inputs[0], flat}, {gathered}, axis});
      if (x.shape.size() == 1) {  // ONNX's [1, k] for a vector
        ir::ValueId shape = g.add_ints(node.name + "_shape", {1, int64_t(picked.size())});
        added.push_back(ir::Node{g.unique_name(node.name + "_reshape"), OpKind::kReshape, {gathered, shape}, {node.outputs[0]}, {}});
      }
    }
    n = g.replace_node(n, std::move(added));
    ++changed;
  }
  return changed;
}

}  // namespace kiln::builder
