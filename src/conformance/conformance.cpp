#include "kiln/conformance.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "kiln/error.h"
#include "kiln/file_io.h"
#include "kiln/ir/random.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/onnx.h"
#include "kiln/builder.h"
#include "kiln/reference.h"
#include "kiln/runtime.h"
#include "kiln/runtime_cache.h"
#include "kiln_onnx/onnx.pb.h"

namespace kiln::conformance {

namespace fs = std::filesystem;

Tolerance tolerance_for(const std::string& dtype) {
  if (dtype == "float16") return {1e-3, 1e-3};
  if (dtype == "bfloat16") return {1e-2, 1e-2};
  if (dtype == "float32" || dtype == "float64") return {1e-3, 1e-7};  // the ONNX backend test defaults
  return {0, 0};
}

namespace {

std::vector<std::string> model_ops(const fs::path& model) {
  ::onnx::ModelProto proto;
  std::vector<std::string> ops;
  try {
    if (!proto.ParseFromString(file_io::read_file(model, "model", uint64_t(std::numeric_limits<int>::max())))) return ops;
  } catch (const Error&) {
    return ops;  // the test's own load reports why
  }
  for (const auto& node : proto.graph().node())
    if (std::find(ops.begin(), ops.end(), node.op_type()) == ops.end()) ops.push_back(node.op_type());
  return ops;
}

// The ops of an "unsupported ops: A (1), ai.onnx.ml::B (2)" message.
std::vector<std::string> unsupported_ops(const std::string& msg) {
  std::vector<std::string> ops;
  size_t at = msg.find("unsupported ops: ");
  if (at == std::string::npos) return ops;
  for (size_t i = at + 17; i < msg.size();) {
    size_t end = msg.find(" (", i);
    if (end == std::string::npos) break;
    ops.push_back(msg.substr(i, end - i));
    i = msg.find(", ", end);
    if (i == std::string::npos) break;
    i += 2;
  }
  return ops;
}

bool starts_with(const std::string& s, std::string_view prefix) { return s.rfind(prefix, 0) == 0; }

// Older ONNX test data (Debian's) stores a bfloat16 tensor as UINT16: its bits.
reference::Tensor as_model_dtype(reference::Tensor t, DType model) {
  if (t.dtype == DType::kUInt16 && model == DType::kBFloat16) t.dtype = DType::kBFloat16;
  return t;
}

// Some older test cases feed an input a shape its model's fixed dims refuse
// (Debian's CastLike ones: 'like' [1] for a declared [3,4]); no runtime that
// checks its inputs runs them, so they are skipped with the reason.
void check_test_data_fits(const ir::Value& input, const reference::Tensor& t) {
  const ir::Shape& declared = input.shape;
  bool fits = declared.size() == t.dims.size();
  for (size_t d = 0; fits && d < declared.size(); ++d) fits = !declared[d].is_constant() || declared[d].constant() == t.dims[d];
  if (!fits)
    fail(ErrorCode::kUnsupported, "test data for input '", input.name, "' has shape ", ir::shape_to_string(ir::shape_of(t.dims)),
         "; the model declares ", ir::shape_to_string(declared));
}

// Why a test that kiln refused (kUnsupported) is skipped, as "category: the error".
// The categories are what the skip list may hold: training (optimizers,
// losses, training modes), sequence/map/optional and string types, element
// types and ops kiln does not have, control flow, other domains,
// data-dependent ranks and sizes the runtime cannot read back, opsets outside
// kiln's range, forms of an op kiln refuses, and the GPU runtime's gaps.
std::string skip_reason(const Error& e) {
  std::string msg = e.what();
  size_t path_end = msg.find(".onnx: ");  // drop the file path the loader puts first
  if (path_end == std::string::npos) path_end = msg.find(".pb: ");
  if (path_end != std::string::npos) msg = msg.substr(msg.find(": ", path_end) + 2);
  auto has = [&](std::string_view text) { return msg.find(text) != std::string::npos; };
  std::vector<std::string> ops = unsupported_ops(msg);
  auto any_op = [&](auto&& pred) { return std::any_of(ops.begin(), ops.end(), pred); };
  auto category = [&]() -> std::string {
    if (has("ai.onnx.preview.training") || has("training mode") ||
        any_op([](const std::string& op) { return op.size() > 4 && op.compare(op.size() - 4, 4, "Loss") == 0; }))
      return "training";
    if (has("is not a tensor (sequence") || any_op([](const std::string& op) {
          return starts_with(op, "Sequence") || starts_with(op, "Optional") || op == "SplitToSequence" ||
                 op == "ConcatFromSequence";
        }))
      return "sequence, map or optional types";
    if (has("dtype STRING") || has("cast to STRING") || any_op([](const std::string& op) {
          return starts_with(op, "String") || op == "RegexFullMatch" || op == "TfIdfVectorizer";
        }))
      return "string type";
    if (has("a type kiln does not have")) return "element type kiln does not have";
    if (any_op([](const std::string& op) { return op == "If" || op == "Loop" || op == "Scan"; }))
      return "control flow (subgraphs)";
    if (any_op([](const std::string& op) { return op.find("::") != std::string::npos; })) return "op of another domain";
    if (!ops.empty()) return "op kiln does not implement";
    if (has("data-dependent rank")) return "data-dependent rank";
    if (has("through an expression")) return "data-dependent size inside a dim expression";
    if (has("does not read back")) return "data-dependent size decided by a large tensor";
    if (has("uses ONNX opset")) return "opset outside kiln's range";
    if (has("; the model declares")) return "test data contradicting its model";
    if (has("GPU runtime")) return "not on the GPU yet";
    return "unsupported form of an op";
  };
  return category() + ": " + msg;
}

// Compares one output's dtype and shape; returns an empty string when they match.
std::string compare_type(const reference::Tensor& actual, const reference::Tensor& expected, size_t index) {
  if (actual.dtype != expected.dtype)
    return str("output ", index, " dtype ", dtype_name(actual.dtype), ", expected ", dtype_name(expected.dtype));
  if (actual.dims != expected.dims)
    return str("output ", index, " shape ", ir::shape_to_string(ir::shape_of(actual.dims)), ", expected ",
               ir::shape_to_string(ir::shape_of(expected.dims)));
  return "";
}

// Compares one output; returns an empty string when it matches.
std::string compare(const reference::Tensor& actual, const reference::Tensor& expected, size_t index) {
  if (std::string diff = compare_type(actual, expected, index); !diff.empty()) return diff;
  if (is_string(actual.dtype)) {
    for (size_t i = 0; i < actual.strings.size(); ++i)
      if (actual.strings[i] != expected.strings[i])
        return str("output ", index, " element ", i, " is '", actual.strings[i], "', expected '", expected.strings[i], "'");
    return "";
  }
  Tolerance tol = tolerance_for(std::string(dtype_name(actual.dtype)));
  std::vector<double> a = ir::read_doubles(actual), b = ir::read_doubles(expected);
  if (is_narrow_float(actual.dtype)) {  // exact, to the bit (-0 too), but any NaN for a NaN
    const uint8_t *abits = actual.data.as<uint8_t>(), *bbits = expected.data.as<uint8_t>();
    for (size_t i = 0; i < a.size(); ++i)
      if (std::isnan(b[i]) ? !std::isnan(a[i]) : abits[i] != bbits[i])
        return str("output ", index, " element ", i, " is ", a[i], " (bits ", int(abits[i]), "), expected ", b[i], " (bits ", int(bbits[i]), ")");
    return "";
  }
  if (!is_floating(actual.dtype)) {
    std::vector<int64_t> ai = ir::read_ints(actual), bi = ir::read_ints(expected);
    for (size_t i = 0; i < ai.size(); ++i)
      if (ai[i] != bi[i]) return str("output ", index, " element ", i, " is ", ai[i], ", expected ", bi[i]);
    return "";
  }
  if (actual.dtype == DType::kFloat32) {
    // Expected float32 outputs were computed in float32 (numpy's FFT of
    // float32 input, for one): an element near zero in an output of large
    // values carries rounding at the output's scale, beyond ONNX's atol 1e-7.
    double largest = 0;
    for (double v : b)
      if (std::isfinite(v)) largest = std::max(largest, std::fabs(v));
    tol.atol = std::max(tol.atol, double(std::numeric_limits<float>::epsilon()) * largest);
  }
  for (size_t i = 0; i < a.size(); ++i) {
    bool ok = std::isnan(b[i]) ? std::isnan(a[i])
              : std::isinf(b[i]) ? a[i] == b[i]
                                 : std::fabs(a[i] - b[i]) <= tol.atol + tol.rtol * std::fabs(b[i]);
    if (!ok) return str("output ", index, " element ", i, " is ", a[i], ", expected ", b[i]);
  }
  return "";
}

bool is_random(ir::OpKind op) {
  using ir::OpKind;
  return op == OpKind::kRandomUniform || op == OpKind::kRandomNormal || op == OpKind::kRandomUniformLike ||
         op == OpKind::kRandomNormalLike || op == OpKind::kBernoulli || op == OpKind::kMultinomial;
}

// The random nodes of a network, and per value whether it depends on one.
struct RandomNodes {
  std::vector<const ir::Node*> nodes;
  std::vector<bool> tainted;
};
RandomNodes random_nodes(const ir::Network& net) {
  RandomNodes r;
  r.tainted.assign(net.values().size(), false);
  for (const ir::Node& node : net.nodes()) {
    bool random = is_random(node.op);
    if (random) r.nodes.push_back(&node);
    for (ir::ValueId v : node.inputs) random = random || (v != ir::kNoValue && r.tainted[size_t(v)]);
    for (ir::ValueId v : node.outputs)
      if (v != ir::kNoValue) r.tainted[size_t(v)] = random;
  }
  return r;
}

// Whether every value of a random node's output lies in its distribution's
// support; an empty string when it does.
std::string check_support(const ir::Network& net, const ir::Node& node, const reference::Tensor& t) {
  using ir::OpKind;
  const ir::Dim classes = node.op == OpKind::kMultinomial ? net.value(node.inputs[0]).shape.at(1) : ir::Dim(0);
  std::vector<double> v = ir::read_doubles(t);
  ir::RandomDistribution d = ir::random_distribution(node);
  // low as the output's type holds it: the smallest value a draw may round to.
  double low = ir::read_doubles(reference::make_tensor(t.dtype, {}, {d.a}))[0];
  for (size_t i = 0; i < v.size(); ++i) {
    bool ok = true;
    const char* support = "";
    switch (node.op) {
      case OpKind::kRandomUniform: case OpKind::kRandomUniformLike:
        ok = v[i] >= low && v[i] < d.b;
        support = "[low, high)";
        break;
      case OpKind::kRandomNormal: case OpKind::kRandomNormalLike:
        ok = std::isfinite(v[i]);
        support = "the finite numbers";
        break;
      case OpKind::kBernoulli:
        ok = v[i] == 0 || v[i] == 1;
        support = "{0, 1}";
        break;
      default:  // Multinomial: a class of its logits' row (a bound only where the model fixes the row's length)
        ok = v[i] >= 0 && (!classes.is_constant() || v[i] < double(classes.constant()));
        support = "the classes";
        break;
    }
    if (!ok) return str("node '", node.name, "' (", ir::op_name(node.op), ") element ", i, " is ", v[i], ", outside ", support);
  }
  return "";
}

std::vector<fs::path> numbered(const fs::path& dir, const std::string& stem) {
  std::vector<fs::path> files;
  for (int i = 0;; ++i) {
    fs::path p = dir / (stem + "_" + std::to_string(i) + ".pb");
    if (!fs::exists(p)) break;
    files.push_back(p);
  }
  return files;
}

// The largest data-dependent size the reference interpreter finds for these
// inputs (every tensor with such a size made an output of a copy), or -1
// when the network has none.
int64_t largest_data_dependent_size(const ir::Network& net, const std::map<std::string, reference::Tensor>& inputs) {
  if (net.data_dependent_symbols().empty()) return -1;
  ir::Network probe = net;
  std::vector<std::vector<size_t>> positions;  // per added output: its data-dependent dims
  for (size_t v = 0; v < net.values().size(); ++v) {
    const ir::Value& val = net.values()[v];
    std::vector<size_t> dims;
    for (size_t i = 0; i < val.shape.size(); ++i) {
      std::set<std::string> symbols;
      val.shape[i].collect_symbols(symbols);
      if (std::any_of(symbols.begin(), symbols.end(), [&](auto& s) { return net.data_dependent_symbols().count(s) > 0; }))
        dims.push_back(i);
    }
    if (dims.empty()) continue;
    probe.add_output(ir::ValueId(v));
    positions.push_back(std::move(dims));
  }
  probe.finalize();
  std::vector<reference::Tensor> outs = reference::run(probe, inputs);
  int64_t largest = 0;
  for (size_t k = 0; k < positions.size(); ++k)
    for (size_t i : positions[k]) largest = std::max(largest, outs[net.outputs().size() + k].dims.at(i));
  return largest;
}

// Builds an fp32 plan whose ranges are exactly these inputs' shapes, and
// whose data-dependent sizes that have no bound of their own are bounded by
// the largest the reference finds (the tests check values, not bounds).
plan::Plan plan_for(const ir::Network& net, const std::map<std::string, reference::Tensor>& inputs) {
  builder::BuildOptions options;
  options.default_data_dependent_bound = largest_data_dependent_size(net, inputs);
  options.progress = [](const std::string&) {};  // one build per test: its passes would bury the results
  for (ir::ValueId id : net.inputs()) {
    const ir::Value& v = net.value(id);
    const auto& dims = inputs.at(v.name).dims;
    if (dims.size() == v.shape.size()) builder::add_input_profile(net, v.name, dims, dims, dims, options);
  }
  return builder::build(net, options);
}

std::vector<reference::Tensor> run_on(Device device, bool eager, const ir::Network& net,
                                      const std::map<std::string, reference::Tensor>& inputs) {
  if (device == Device::kCpu) return reference::run(net, inputs);
  plan::Plan p = plan_for(net, inputs);
  if (device == Device::kPlan) return reference::run(p.network, inputs);
  runtime::RuntimeConfig config;
  config.progress = [](const std::string&) {};  // one engine per test, as for the builds
  config.dynamic_shapes_kernel_specialization_strategy = eager ? runtime::KernelSpecialization::kEager : runtime::KernelSpecialization::kNone;
  // One kernel cache for every case of the run: the cases share most generic
  // kernels, and each new engine would otherwise compile them all again.
  static const auto shared_kernels = std::make_shared<runtime::RuntimeCache>(runtime::compiler_version());
  config.cache = shared_kernels;
  auto engine = runtime::Engine::create(std::move(p), config);
  auto context = engine->create_context();
  return runtime::run_with_host_tensors(*context, *engine, inputs);
}

}  // namespace

CaseResult run_case(const fs::path& dir, Device device, bool eager_specialization) {
  CaseResult r;
  r.name = dir.filename().string();
  r.ops = model_ops(dir / "model.onnx");
  ir::Network net;
  try {
    net = onnx::load_model(dir / "model.onnx");
  } catch (const Error& e) {
    r.status = e.code() == ErrorCode::kUnsupported ? Status::kSkipped : Status::kFailed;
    r.detail = r.status == Status::kSkipped ? skip_reason(e) : str("load: ", e.what());
    return r;
  }
  // A model with random ops runs with each random node's output as an extra
  // output (after the model's), whose values are checked against its support.
  RandomNodes random = random_nodes(net);
  ir::Network run_net = net;
  std::vector<size_t> random_output;  // per random node, its output's index among run_net's
  for (const ir::Node* node : random.nodes) {
    const auto& outs = run_net.outputs();
    auto at = std::find(outs.begin(), outs.end(), node->outputs[0]);
    random_output.push_back(size_t(at - outs.begin()));
    if (at == outs.end()) run_net.add_output(node->outputs[0]);
  }
  if (!random.nodes.empty()) run_net.finalize();
  std::vector<fs::path> sets;
  for (auto& entry : fs::directory_iterator(dir))
    if (entry.is_directory() && entry.path().filename().string().rfind("test_data_set_", 0) == 0) sets.push_back(entry.path());
  std::sort(sets.begin(), sets.end());
  if (sets.empty()) {
    r.status = Status::kSkipped;
    r.detail = "no test_data_set folders";
    return r;
  }
  for (const fs::path& set : sets) {
    try {
      std::map<std::string, reference::Tensor> inputs;
      std::vector<fs::path> in_files = numbered(set, "input"), out_files = numbered(set, "output");
      if (in_files.size() != net.inputs().size())
        fail(ErrorCode::kInvalidModel, set.filename().string(), " has ", in_files.size(), " inputs; the model has ",
             net.inputs().size());
      for (size_t i = 0; i < in_files.size(); ++i) {
        const ir::Value& input = net.value(net.inputs()[i]);
        reference::Tensor t = as_model_dtype(onnx::load_tensor_file(in_files[i]), input.dtype);
        check_test_data_fits(input, t);
        inputs[input.name] = std::move(t);
      }
      std::vector<reference::Tensor> outputs = run_on(device, eager_specialization, run_net, inputs);
      if (out_files.size() != net.outputs().size())
        fail(ErrorCode::kInvalidModel, set.filename().string(), " has ", out_files.size(), " outputs; the model makes ",
             net.outputs().size());
      std::vector<std::string> diffs;
      for (size_t i = 0; i < net.outputs().size(); ++i) {
        reference::Tensor expected = as_model_dtype(onnx::load_tensor_file(out_files[i]), outputs[i].dtype);
        diffs.push_back(random.tainted[size_t(net.outputs()[i])] ? compare_type(outputs[i], expected, i)
                                                                  : compare(outputs[i], expected, i));
      }
      for (size_t k = 0; k < random.nodes.size(); ++k) diffs.push_back(check_support(net, *random.nodes[k], outputs[random_output[k]]));
      for (const std::string& diff : diffs)
        if (!diff.empty()) {
          r.status = Status::kFailed;
          r.detail = set.filename().string() + ": " + diff;
          return r;
        }
      if (!random.nodes.empty()) {
        r.status = Status::kRandomChecked;
        r.detail = "random: shape, dtype and support checked";
      }
    } catch (const Error& e) {
      r.status = e.code() == ErrorCode::kUnsupported ? Status::kSkipped : Status::kFailed;
      r.detail = r.status == Status::kSkipped ? skip_reason(e) : str(set.filename().string(), ": ", e.what());
      if (e.code() == ErrorCode::kDevice) runtime::reset_device_after_error();  // so later cases start clean
      return r;
    }
  }
  return r;
}

Report run_suite(const fs::path& root, const std::string& filter, Device device, bool eager_specialization,
                 const std::function<void(const CaseResult&)>& progress) {
  if (!fs::is_directory(root)) fail(ErrorCode::kIoError, root, " is not a directory of ONNX node tests");
  std::vector<fs::path> dirs;
  for (auto& entry : fs::directory_iterator(root))
    if (entry.is_directory() && fs::exists(entry.path() / "model.onnx") &&
        entry.path().filename().string().find(filter) != std::string::npos)
      dirs.push_back(entry.path());
  std::sort(dirs.begin(), dirs.end());
  Report report;
  for (const fs::path& dir : dirs) {
    auto start = std::chrono::steady_clock::now();
    CaseResult r = run_case(dir, device, eager_specialization);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    (r.status == Status::kPassed           ? report.passed
     : r.status == Status::kFailed         ? report.failed
     : r.status == Status::kRandomChecked ? report.random_checked
                                          : report.skipped)++;
    if (progress) progress(r);
    report.cases.push_back(std::move(r));
  }
  return report;
}

}  // namespace kiln::conformance
