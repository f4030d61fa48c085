// compare_layers: plan tensors against the reference interpreter's values of
// their counterparts, as float64, with the first node beyond the tolerance.
#include "kiln/debug.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/ir/window.h"
#include "kiln/reference.h"

namespace kiln::debug {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string join(const std::vector<std::string>& parts, const char* separator) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : separator) + p;
  return out;
}

// A reference tensor by name: a node's output, a network input or a weight.
const ir::TensorData* find_tensor(const ir::Network& net, const std::map<std::string, ir::TensorData>& values,
                                  const std::map<std::string, ir::TensorData>& inputs, const std::string& name) {
  if (auto it = values.find(name); it != values.end()) return &it->second;
  if (auto it = inputs.find(name); it != inputs.end()) return &it->second;
  auto id = net.find_value(name);
  return id && net.value(*id).weight ? &*net.value(*id).weight : nullptr;
}

ValueRange range_of(const std::string& tensor, const std::string& source, const ir::TensorData& t) {
  ValueRange r{tensor, source, t.dtype, t.dims};
  std::vector<double> v = ir::read_doubles(t);
  if (v.empty()) return r;
  r.min = INFINITY;
  r.max = -INFINITY;
  for (double x : v) {
    r.min = std::min(r.min, x);
    r.max = std::max(r.max, x);
    r.mean += x;
  }
  r.mean /= double(v.size());
  return r;
}

// The element-wise comparison of one tensor (dims already checked equal).
// rtol applies to |reference| but never to less than the tensor's RMS: an
// element near zero in a tensor of large values carries the rounding of the
// large products summed into it, which fp16 and bf16 make as large as the
// tensor's scale allows, not as small as the element.
void compare_values(const ir::TensorData& got, const ir::TensorData& want, Tolerance tol, TensorComparison& out) {
  std::vector<double> a = ir::read_doubles(got), b = ir::read_doubles(want);
  double diff2 = 0, ref2 = 0;
  for (double x : b)
    if (std::isfinite(x)) ref2 += x * x;
  double rms = b.empty() ? 0 : std::sqrt(ref2 / double(b.size()));
  out.elements = a.size();
  for (size_t k = 0; k < a.size(); ++k) {
    double d = std::fabs(a[k] - b[k]);
    if (std::isnan(a[k]) && std::isnan(b[k])) d = 0;
    else if (std::isnan(a[k]) || std::isnan(b[k]) || (std::isinf(b[k]) && a[k] != b[k])) d = INFINITY;
    else if (std::isinf(b[k])) d = 0;  // the same infinity
    out.max_abs_error = std::max(out.max_abs_error, d);
    out.max_rel_error = std::max(out.max_rel_error, d / std::max(std::fabs(b[k]), 1e-6));
    diff2 += d * d;
    if (!(d <= tol.atol + tol.rtol * std::max(std::fabs(b[k]), rms)) && out.beyond++ == 0) {
      out.first_beyond = k;
      out.got_at_first = a[k];
      out.reference_at_first = b[k];
    }
  }
  out.reference_rms = rms;
  out.relative_l2 = ref2 > 0 ? std::sqrt(diff2) / std::sqrt(ref2) : std::sqrt(diff2);
  out.compared = true;
  out.pass = out.beyond == 0;
}

}  // namespace

Tolerance default_tolerance(plan::Precision precision) {
  switch (precision) {
    case plan::Precision::kFloat16: return {1e-2, 1e-3};
    case plan::Precision::kBFloat16: return {5e-2, 1e-2};
    case plan::Precision::kFloat32: break;
  }
  return {1e-4, 1e-5};
}

Counterpart counterpart(const ir::Network& model, const std::string& name) {
  if (model.find_value(name)) return {name, {}, ""};
  // The builder names what it makes STEM + SUFFIX + "__kN" (N: its unique counter).
  size_t counter = name.rfind("__k");
  bool made = counter != std::string::npos && counter + 3 < name.size() &&
              name.find_first_not_of("0123456789", counter + 3) == std::string::npos;
  std::string base = made ? name.substr(0, counter) : "";
  for (const char* suffix : {"_float16", "_bfloat16"})
    if (ends_with(base, suffix)) {
      Counterpart c = counterpart(model, base.substr(0, base.size() - std::string(suffix).size()));
      if (!c.tensor.empty()) return c;
    }
  for (const char* suffix : {"_channels_last", "_pre_transpose"}) {
    if (!ends_with(base, suffix)) continue;
    Counterpart c = counterpart(model, base.substr(0, base.size() - std::string(suffix).size()));
    auto id = c.tensor.empty() ? std::nullopt : model.find_value(c.tensor);
    if (id && c.perm.empty() && model.value(*id).shape.size() >= 3)
      return {c.tensor, ir::to_channels_last_perm(model.value(*id).shape.size()), ""};
  }
  return {"", {}, "made by the builder: the model has no tensor it holds"};
}

std::string node_sources(const ir::Node& node) {
  auto present = [&](size_t i) { return node.inputs.size() > i && node.inputs[i] != ir::kNoValue; };
  switch (node.op) {
    case ir::OpKind::kFusedElementwise: return join(node.attrs.get_strings("ops"), "+");
    case ir::OpKind::kFusedMatMul: {
      std::vector<std::string> parts{"MatMul"};
      if (node.attrs.get_float("alpha", 1.0) != 1.0) parts.push_back("scale");
      if (present(2)) parts.push_back("bias");
      if (std::string act = node.attrs.get_string("activation", "none"); act != "none") parts.push_back(act);
      if (present(3)) parts.push_back("residual Add");
      return join(parts, "+");
    }
    case ir::OpKind::kAttention: {
      std::vector<std::string> parts{"MatMul"};
      if (present(3)) parts.push_back("mask");
      if (node.attrs.get_int("causal", 0)) parts.push_back("causal mask");
      parts.insert(parts.end(), {"Softmax", "MatMul"});
      return join(parts, "+");
    }
    default: return std::string(ir::op_name(node.op));
  }
}

LayerReport compare_layers(const plan::Plan& plan, const std::map<std::string, ir::TensorData>& got, const ir::Network* model,
                           const std::map<std::string, ir::TensorData>& inputs, Tolerance tolerance, const Oracle* oracle) {
  if (oracle && !model) fail(ErrorCode::kInvalidArgument, oracle->name, " runs the model: compare_layers needs it");
  const ir::Network& net = plan.network;
  const ir::Network& ref_net = model ? *model : net;
  auto counterpart_of = [&](const std::string& name) { return model ? counterpart(*model, name) : Counterpart{name, {}, ""}; };
  // Only the counterparts are kept: the reference frees every other intermediate.
  std::set<std::string> wanted;
  for (const ir::Node& node : net.nodes())
    for (ir::ValueId v : node.outputs)
      if (v != ir::kNoValue)
        if (Counterpart c = counterpart_of(net.value(v).name); !c.tensor.empty()) wanted.insert(c.tensor);
  std::map<std::string, ir::TensorData> ref =
      oracle ? oracle->tensors(wanted)
             : reference::run_every_tensor(ref_net, inputs, [&](const std::string& name) { return wanted.count(name) > 0; });

  LayerReport report;
  report.reference = oracle ? oracle->name : model ? "model" : "plan";
  report.tolerance = tolerance;
  for (size_t n = 0; n < net.nodes().size(); ++n) {
    const ir::Node& node = net.nodes()[n];
    for (ir::ValueId v : node.outputs) {
      if (v == ir::kNoValue) continue;
      TensorComparison t;
      t.node = n;
      t.node_name = node.name;
      t.op = std::string(ir::op_name(node.op));
      t.sources = node_sources(node);
      t.tensor = net.value(v).name;
      t.dtype = net.value(v).dtype;
      Counterpart c = counterpart_of(t.tensor);
      auto mine = got.find(t.tensor);
      const ir::TensorData* want = c.tensor.empty() ? nullptr : find_tensor(ref_net, ref, inputs, c.tensor);
      if (mine != got.end()) t.dims = mine->second.dims;
      if (mine == got.end()) {
        t.why_not = "the plan's run did not give it (no storage)";
      } else if (c.tensor.empty()) {
        t.why_not = c.why_not;
      } else if (!want) {
        t.why_not = str(oracle ? oracle->name : "the reference", " did not compute '", c.tensor, "'");
      } else {
        t.reference_tensor = c.tensor;
        ir::TensorData laid_out = c.perm.empty() ? *want : reference::permute(*want, c.perm);
        if (laid_out.dims != t.dims)
          t.why_not = str("'", c.tensor, "' is ", ir::shape_to_string(ir::shape_of(want->dims)),
                          c.perm.empty() ? "" : " (channels-last: " + ir::shape_to_string(ir::shape_of(laid_out.dims)) + ")",
                          " in the reference but ", ir::shape_to_string(ir::shape_of(t.dims)), " in the plan");
        else
          compare_values(mine->second, laid_out, tolerance, t);
      }
      if (t.compared) ++report.compared;
      else ++report.not_comparable;
      if (!t.pass) {
        ++report.failed;
        if (!report.first_failure) report.first_failure = report.tensors.size();
      }
      report.tensors.push_back(std::move(t));
    }
  }
  if (report.first_failure) {
    const ir::Node& node = net.nodes()[report.tensors[*report.first_failure].node];
    for (ir::ValueId v : node.inputs) {
      if (v == ir::kNoValue) continue;
      const ir::Value& value = net.value(v);
      Counterpart c = counterpart_of(value.name);
      const ir::TensorData* want = c.tensor.empty() ? nullptr : find_tensor(ref_net, ref, inputs, c.tensor);
      if (value.weight) report.first_failure_inputs.push_back(range_of(value.name, "weight", *value.weight));
      else if (value.is_input && inputs.count(value.name))
        report.first_failure_inputs.push_back(range_of(value.name, "input", inputs.at(value.name)));
      else if (want) report.first_failure_inputs.push_back(range_of(value.name, "reference", *want));
      else if (auto it = got.find(value.name); it != got.end())
        report.first_failure_inputs.push_back(range_of(value.name, "plan", it->second));
    }
  }
  return report;
}

}  // namespace kiln::debug
