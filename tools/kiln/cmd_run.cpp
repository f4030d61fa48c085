// kiln run: executes a model on given or random inputs.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <cmath>
#include <cstdio>
#include <map>
#include <filesystem>
#include <iostream>
#include <random>

#include "cli.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/npy.h"
#include "kiln/onnx.h"
#include "kiln/plan.h"
#include "kiln/builder.h"
#include "kiln/debug.h"
#include "kiln/reference.h"
#include "kiln/runtime.h"

namespace kiln::cli {

namespace fs = std::filesystem;

std::string safe_file_name(const std::string& name) {
  std::string out;
  for (char ch : name) out += (std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.') ? ch : '_';
  return out.empty() ? "output" : out;
}

plan::Plan build_for_run(const ir::Network& net, const std::map<std::string, reference::Tensor>& inputs,
                         const std::string& precision) {
  builder::BuildOptions options;
  options.precision = *plan::parse_precision(precision);  // the parser accepted only these names
  options.progress = [](const std::string& line) { kiln::log(Severity::kVerbose, line); };  // detail here; kiln build shows them
  for (ir::ValueId id : net.inputs()) {
    const auto& dims = inputs.at(net.value(id).name).dims;
    builder::add_input_profile(net, net.value(id).name, dims, dims, dims, options);
  }
  kiln::log(Severity::kInfo, str("building a ", plan::precision_name(options.precision), " plan"));
  return builder::build(net, options);
}

RunSetup set_up_run(const RunOptions& options, const std::string& load_dir, const char* usage) {
  RunSetup setup;
  setup.model = model_path(options.model, usage);
  if (is_plan_file(setup.model)) setup.plan = plan::load(setup.model);
  setup.net = setup.plan ? setup.plan->network : onnx::load_model(setup.model);
  const ir::Network& net = setup.net;
  // The ranges of the selected profile: their opt values fill dims not given, and a plan checks the inputs against them.
  if (setup.plan) check_profile_index(*setup.plan, options.profile_index, setup.model);
  else if (options.profile_index != 0)
    fail(ErrorCode::kInvalidArgument, "--profile-index ", options.profile_index, ": ", setup.model,
         " is an ONNX model, which runs with one profile (0); build a plan with several with kiln build --profile");
  const ir::DimRanges& ranges = setup.plan ? setup.plan->profiles[size_t(options.profile_index)] : net.dim_ranges();
  begin_input_phase();
  auto shapes = parse_shapes(options.shapes, "--shapes");
  std::map<std::string, reference::Tensor>& inputs = setup.inputs;
  for (const std::string& spec : options.inputs) {
    auto [name, file] = split_input_spec(spec, net);
    if (inputs.count(name)) fail(ErrorCode::kInvalidArgument, "--input gives '", name, "' twice");
    inputs[name] = io::read_npy(file);
  }
  if (!load_dir.empty()) {
    if (!fs::is_directory(load_dir)) fail(ErrorCode::kIoError, "--load-inputs ", load_dir, " is not a folder");
    for (ir::ValueId id : net.inputs()) {
      const std::string& name = net.value(id).name;
      fs::path file = fs::path(load_dir) / (safe_file_name(name) + ".npy");
      if (!inputs.count(name) && fs::exists(file)) inputs[name] = io::read_npy(file);
    }
  }
  for (auto& [name, dims] : shapes)
    if (!net.find_value(name) || !net.value(*net.find_value(name)).is_input)
      fail(ErrorCode::kInvalidArgument, "--shapes names '", name, "', which is not an input of the model");

  // Bind symbols from given tensors and --shapes first, then fill the rest.
  ir::SymbolBindings bindings;
  auto bind = [&](const ir::Value& v, const std::vector<int64_t>& dims) {
    for (size_t i = 0; i < v.shape.size() && i < dims.size(); ++i) {
      std::set<std::string> symbols;
      v.shape[i].collect_symbols(symbols);
      if (!v.shape[i].is_constant() && symbols.size() == 1) bindings.emplace(*symbols.begin(), dims[i]);
    }
  };
  for (ir::ValueId id : net.inputs()) {
    const ir::Value& v = net.value(id);
    if (auto it = inputs.find(v.name); it != inputs.end()) bind(v, it->second.dims);
    if (auto it = shapes.find(v.name); it != shapes.end()) bind(v, it->second);
  }
  std::mt19937_64 rng(options.seed);
  for (ir::ValueId id : net.inputs()) {
    const ir::Value& v = net.value(id);
    if (inputs.count(v.name)) continue;
    std::vector<int64_t> dims;
    if (auto it = shapes.find(v.name); it != shapes.end()) {
      dims = it->second;
    } else {
      for (const ir::Dim& d : v.shape) {
        if (auto value = d.evaluate(bindings)) {
          dims.push_back(*value);
          continue;
        }
        std::set<std::string> symbols;
        d.collect_symbols(symbols);
        for (const std::string& s : symbols) {
          auto range = ranges.find(s);
          int64_t pick = range != ranges.end() ? range->second.opt : 1;
          kiln::log(Severity::kInfo, str("note: input '", v.name, "' dim '", s, "' not given; using ", pick));
          bindings.emplace(s, pick);
        }
        dims.push_back(d.evaluate(bindings).value_or(1));
      }
    }
    inputs[v.name] = random_tensor(v.dtype, dims, rng);
  }
  if (setup.plan)  // on every device: the CPU runs the shapes the GPU would
    for (ir::ValueId id : net.inputs())
      plan::check_input_shape(*setup.plan, options.profile_index, net.value(id).name, inputs.at(net.value(id).name).dims);

  return setup;
}

namespace {

// kiln profile: per launch its time, share and the rates it reached, then the
// total and the ops that took most of it.
void report_profile(const std::vector<runtime::ExecutionContext::StepTime>& steps, const cudaDeviceProp& prop, Json& doc) {
  double total = 0;
  for (const auto& s : steps) total += s.gpu_us;
  std::cout << "launches timed one by one, back to back (median of each), " << steps.size() << " launches, " << total
            << " us in all (each time holds the GPU's gap between two launches, 1-3 us: the graph's GPU time per run\n"
               "above is the true total):\n";
  char line[512];
  std::snprintf(line, sizeof line, "%4s %9s %6s %9s %9s  %-24s %-22s %s\n", "#", "us", "share", "GB/s", "TFLOP/s", "op",
                "runs on", "node");
  std::cout << line;
  doc["profile"] = {{"total_us", total}, {"launches", Json::array()}};
  std::map<std::string, double> by_op;
  for (size_t i = 0; i < steps.size(); ++i) {
    const auto& s = steps[i];
    double share = total > 0 ? s.gpu_us / total : 0;
    double gbps = s.gpu_us > 0 ? double(s.bytes) / (s.gpu_us * 1e3) : 0;
    double tflops = s.gpu_us > 0 ? s.flops / (s.gpu_us * 1e6) : 0;
    std::snprintf(line, sizeof line, "%4zu %9.2f %5.1f%% %9.1f %9.2f  %-24s %-22s %s\n", i, s.gpu_us, 100 * share, gbps, tflops,
                  s.op.c_str(), s.runs.c_str(), s.node.c_str());
    std::cout << line;
    doc["profile"]["launches"].push_back({{"node", s.node}, {"op", s.op}, {"runs", s.runs}, {"gpu_us", s.gpu_us},
                                          {"share", share}, {"bytes", s.bytes}, {"flops", s.flops}, {"gb_per_s", gbps},
                                          {"tflop_per_s", tflops}});
    by_op[s.op] += s.gpu_us;
  }
  std::vector<std::pair<double, std::string>> ops;
  for (auto& [op, us] : by_op) ops.push_back({us, op});
  std::sort(ops.rbegin(), ops.rend());
  std::cout << "by op:";
  for (auto& [us, op] : ops) std::cout << " " << op << " " << us << " us (" << (total > 0 ? 100 * us / total : 0) << "%)";
  std::cout << "\n";
  doc["profile"]["device"] = prop.name;
}

std::vector<reference::Tensor> run_on_gpu(plan::Plan p, const std::map<std::string, reference::Tensor>& inputs,
                                          const RunOptions& options, Json& doc) {
  auto cache_file = runtime_cache_path(options.runtime);
  runtime::RuntimeConfig config = gpu_config(cache_file, options.runtime);
  auto start = std::chrono::steady_clock::now();
  auto ms_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
  };
  auto engine = runtime::Engine::create(std::move(p), config);
  double engine_ms = ms_since(start);
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  auto context = engine->create_context();
  context->set_optimization_profile(options.profile_index, stream);
  double setup_ms = ms_since(start);
  runtime::DeviceIo io(*context, *engine, inputs);
  context->enqueue(stream);
  std::vector<reference::Tensor> outputs = io.download(stream);
  // Timed runs use the same device memory (io lives until the end).
  std::vector<double> latency;
  cudaEvent_t begin, end;
  cudaEventCreate(&begin);
  cudaEventCreate(&end);
  double gpu_ms_total = 0;
  auto call = [&](bool timed) {
    auto t0 = std::chrono::steady_clock::now();
    cudaEventRecord(begin, stream);
    context->enqueue(stream);
    cudaEventRecord(end, stream);
    cudaStreamSynchronize(stream);
    double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    float gpu_ms = 0;
    cudaEventElapsedTime(&gpu_ms, begin, end);
    if (timed) {
      latency.push_back(us);
      gpu_ms_total += gpu_ms;
    }
  };
  // Each phase lasts for at least its count of runs and at least its time.
  auto phase = std::chrono::steady_clock::now();
  for (int i = 0; i < options.warmup || ms_since(phase) < options.warmup_ms; ++i) call(false);
  phase = std::chrono::steady_clock::now();
  while (latency.size() < size_t(options.iterations) || ms_since(phase) < 1000 * options.duration_s) call(true);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail(ErrorCode::kDevice, "timed runs failed: ", cudaGetErrorString(e));
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, engine->device());
  std::cout << "device: cuda " << prop.name << ", " << engine->kernel_count() << " compiled kernels, engine+context "
            << setup_ms << " ms (engine " << engine_ms << " ms, context with its warm-up run " << setup_ms - engine_ms << " ms)\n";
  doc["device_name"] = prop.name;
  doc["kernels"] = engine->kernel_count();
  doc["setup_ms"] = setup_ms;
  doc["engine_ms"] = engine_ms;
  if (!latency.empty()) {
    Latency l = summarize(latency);
    std::cout << "latency over " << latency.size() << " runs (us): " << latency_text(l) << "; GPU time per run "
              << 1000.0 * gpu_ms_total / double(latency.size()) << " us\n";
    doc["latency_us"] = latency_json(l);
    doc["gpu_us_per_run"] = 1000.0 * gpu_ms_total / double(latency.size());
  }
  doc["cuda_graphs"] = graph_stats_json(*context);
  doc["specialization"] = Json::array();
  for (auto& st : context->specialization_stats())
    doc["specialization"].push_back(
        {{"shape", st.shape}, {"generic", st.generic}, {"specialized", st.specialized}, {"pending", st.pending}});
  if (options.verbose) print_graph_stats(*context);
  if (options.verbose)
    for (auto& st : context->specialization_stats())
      std::cout << "kernels at " << st.shape << " (" << options.runtime.kernel_specialization << "): " << st.generic
                << " generic, " << st.specialized << " specialized, " << st.pending << " pending\n";
  cudaEventDestroy(begin);
  cudaEventDestroy(end);
  if (options.profile_kernels) report_profile(context->profile(stream, options.profile_iterations), prop, doc);
  // Saved at the end, so kernels specialized during the runs are kept too.
  save_runtime_cache(config, cache_file);
  cudaStreamDestroy(stream);
  return outputs;
}

using debug::Tolerance;

// What a correct run may differ by: the user's, else what the plan's float type holds.
Tolerance tolerance_for(const RunOptions& options, std::optional<plan::Precision> precision) {
  // The reference against itself (CPU device) differs only in summation order.
  Tolerance t = precision ? debug::default_tolerance(*precision) : Tolerance{1e-9, 1e-12};
  if (options.rtol >= 0) t.rtol = options.rtol;
  if (options.atol >= 0) t.atol = options.atol;
  return t;
}

// Compares every output element with the reference. Returns, when some are
// beyond the tolerance, the worst output: the one with the element farthest
// beyond its bound (as a multiple of atol + rtol * |reference|), and that multiple.
std::optional<std::pair<std::string, double>> compare_with_reference(const ir::Network& net,
                                                                     const std::map<std::string, reference::Tensor>& inputs,
                                                                     const std::vector<reference::Tensor>& outputs,
                                                                     Tolerance tol, Json& doc) {
  Json out = Json::array();
  std::optional<std::pair<std::string, double>> worst;
  std::vector<reference::Tensor> expected = reference::run(net, inputs);
  for (size_t i = 0; i < outputs.size(); ++i) {
    const std::string& name = net.value(net.outputs()[i]).name;
    std::vector<double> a = ir::read_doubles(outputs[i]), b = ir::read_doubles(expected[i]);
    double max_abs = 0, max_rel = 0, scale = 0, excess = 0;
    size_t beyond = 0, first = 0;
    for (double x : b) scale = std::max(scale, std::fabs(x));
    for (size_t k = 0; k < a.size() && k < b.size(); ++k) {
      double d = std::fabs(a[k] - b[k]);
      if (std::isnan(a[k]) && std::isnan(b[k])) d = 0;
      else if (std::isnan(a[k]) || std::isnan(b[k]) || (std::isinf(b[k]) && a[k] != b[k])) d = INFINITY;
      else if (std::isinf(b[k])) d = 0;  // the same infinity
      max_abs = std::max(max_abs, d);
      max_rel = std::max(max_rel, d / std::max(std::fabs(b[k]), 1e-6));
      double bound = tol.atol + tol.rtol * std::fabs(b[k]);
      if (!(d <= bound) && beyond++ == 0) first = k;
      excess = std::max(excess, d == 0 ? 0 : bound > 0 ? d / bound : INFINITY);
    }
    bool within = beyond == 0 && a.size() == b.size();
    if (!within && (!worst || excess > worst->second)) worst = {name, a.size() == b.size() ? excess : INFINITY};
    std::cout << "compare " << name << ": max abs error " << max_abs << ", max rel error " << max_rel
              << ", max abs error / max |reference| " << (scale > 0 ? max_abs / scale : max_abs);
    if (within) std::cout << "; within rtol " << tol.rtol << ", atol " << tol.atol << "\n";
    else
      std::cout << "; " << beyond << " of " << b.size() << " elements beyond rtol " << tol.rtol << ", atol " << tol.atol
                << " (first: element " << first << ", got " << a[first] << ", reference " << b[first] << ")\n";
    Json entry = {{"output", name},
                  {"max_abs_error", max_abs},
                  {"max_rel_error", max_rel},
                  {"max_abs_error_over_max_reference", scale > 0 ? max_abs / scale : max_abs},
                  {"elements_beyond_tolerance", beyond},
                  {"within_tolerance", within}};
    if (beyond) entry["first_beyond"] = {{"element", first}, {"got", a[first]}, {"reference", b[first]}};
    out.push_back(std::move(entry));
  }
  doc["compare"] = std::move(out);
  doc["tolerance"] = {{"rtol", tol.rtol}, {"atol", tol.atol}};
  if (worst) doc["worst_output"] = worst->first;
  return worst;
}

void save_inputs(const ir::Network& net, const std::map<std::string, reference::Tensor>& inputs, const std::string& dir,
                 Json& doc) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(ErrorCode::kIoError, "cannot create --save-inputs ", dir, ": ", ec.message());
  for (ir::ValueId id : net.inputs()) {
    const std::string& name = net.value(id).name;
    fs::path file = fs::path(dir) / (safe_file_name(name) + ".npy");
    io::write_npy(file, inputs.at(name));
    std::cout << "input " << name << " written to " << file.string() << " (run again with --input " << name << ":"
              << file.string() << ")\n";
    doc["saved_inputs"][name] = file.string();
  }
}

}  // namespace

int cmd_run(const RunOptions& options, Json& doc) {
  RunSetup setup = set_up_run(options, "", "usage: kiln run MODEL.onnx|PLAN.kiln [--device cpu|cuda] [--shapes ...] [--input NAME:FILE.npy]");
  const std::string& model = setup.model;
  std::optional<plan::Plan>& loaded_plan = setup.plan;
  const ir::Network& net = setup.net;
  const std::map<std::string, reference::Tensor>& inputs = setup.inputs;
  uint64_t seed = options.seed;
  doc["model"] = model;
  doc["device"] = options.runtime.device;
  doc["seed"] = seed;
  doc["profile_index"] = options.profile_index;
  doc["inputs"] = Json::array();
  for (ir::ValueId id : net.inputs()) {
    const reference::Tensor& t = inputs.at(net.value(id).name);
    doc["inputs"].push_back({{"name", net.value(id).name}, {"dtype", dtype_name(t.dtype)}, {"dims", t.dims}});
  }
  if (!options.save_inputs_dir.empty()) save_inputs(net, inputs, options.save_inputs_dir, doc);
  std::vector<reference::Tensor> outputs;
  std::optional<plan::Precision> precision;  // of the plan that ran; none on the CPU device
  if (options.runtime.device == "cpu") {
    auto start = std::chrono::steady_clock::now();
    outputs = reference::run(net, inputs);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::cout << "device: cpu (reference interpreter), seed " << seed << ", " << ms << " ms\n";
    doc["reference_ms"] = ms;
  } else {
    plan::Plan p = loaded_plan ? std::move(*loaded_plan) : build_for_run(net, inputs, options.precision);
    precision = p.precision;
    outputs = run_on_gpu(std::move(p), inputs, options, doc);
  }
  std::optional<std::pair<std::string, double>> worst;
  if (options.compare_reference) worst = compare_with_reference(net, inputs, outputs, tolerance_for(options, precision), doc);
  if (!options.output_dir.empty()) {
    std::error_code ec;
    fs::create_directories(options.output_dir, ec);
    if (ec) fail(ErrorCode::kIoError, "cannot create --output-dir ", options.output_dir, ": ", ec.message());
  }
  doc["outputs"] = Json::array();
  for (size_t i = 0; i < outputs.size(); ++i) {
    const ir::Value& v = net.value(net.outputs()[i]);
    const reference::Tensor& t = outputs[i];
    std::vector<double> values = is_string(t.dtype) ? std::vector<double>{} : ir::read_doubles(t);
    double lo = INFINITY, hi = -INFINITY, sum = 0;
    for (double x : values) {
      lo = std::min(lo, x);
      hi = std::max(hi, x);
      sum += x;
    }
    std::cout << "output " << v.name << ": " << dtype_name(t.dtype) << ir::shape_to_string(ir::shape_of(t.dims));
    if (!values.empty()) std::cout << " min " << lo << " max " << hi << " mean " << sum / double(values.size());
    std::vector<std::string> first(t.strings.begin(), t.strings.begin() + std::ptrdiff_t(std::min<size_t>(t.strings.size(), 4)));
    for (size_t k = 0; k < first.size(); ++k) std::cout << (k ? ", '" : " first '") << first[k] << "'";
    std::cout << "\n";
    Json out = {{"name", v.name}, {"dtype", dtype_name(t.dtype)}, {"dims", t.dims}};
    if (!values.empty()) {
      out["min"] = lo;
      out["max"] = hi;
      out["mean"] = sum / double(values.size());
    }
    if (!options.output_dir.empty()) {
      fs::path file = fs::path(options.output_dir) / (safe_file_name(v.name) + ".npy");
      io::write_npy(file, t);
      std::cout << "  wrote " << file.string() << "\n";
      out["file"] = file.string();
    }
    doc["outputs"].push_back(std::move(out));
  }
  if (worst) {
    std::cerr << "kiln run: outputs differ from the reference beyond the tolerance; the worst is '" << worst->first
              << "' (an element's error is " << worst->second << " times atol + rtol * |reference|; see the compare lines)\n";
    return kMismatch;
  }
  return kOk;
}

}  // namespace kiln::cli
