// kiln debug --compare-layers: every tensor a plan materializes against the
// reference interpreter's (or onnxruntime's), in plan order, and the first node
// beyond the tolerance.
#include <cstdio>
#include <iostream>
#include <set>

#include "cli.h"
#include "kiln/debug.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/onnx.h"
#include "kiln/reference.h"
#include "kiln/runtime.h"

namespace kiln::cli {

namespace {

// Before anything is built: without a GPU, say what the CPU mode offers instead.
void require_gpu() {
  std::string why;
  if (!runtime::cuda_available(&why))
    fail(ErrorCode::kDevice, "--compare-layers runs the plan on a GPU, and none is usable (", why,
         "); --device cpu compares the plan's own network, run on the reference interpreter, with the model instead "
         "(the builder's rewrites and precision, without the GPU's kernels)");
}

// Runs the plan on the GPU a node at a time and keeps every tensor it writes.
std::map<std::string, ir::TensorData> run_on_gpu(const plan::Plan& p, const std::map<std::string, reference::Tensor>& inputs,
                                                 const RunOptions& options, Json& doc) {
  auto cache_file = runtime_cache_path(options.runtime);
  runtime::RuntimeConfig config = gpu_config(cache_file, options.runtime);
  auto engine = runtime::Engine::create(p, config);
  cudaStream_t stream;
  if (cudaError_t e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking); e != cudaSuccess)
    fail(ErrorCode::kDevice, "creating a stream: ", cudaGetErrorString(e));
  std::map<std::string, ir::TensorData> values;
  try {
    auto context = engine->create_context();
    context->set_optimization_profile(options.profile_index, stream);
    runtime::DeviceIo io(*context, *engine, inputs);
    values = runtime::read_every_tensor(*context, stream);
  } catch (...) {
    cudaStreamDestroy(stream);
    throw;
  }
  cudaStreamDestroy(stream);
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, engine->device());
  std::cout << "device: cuda " << prop.name << ", " << engine->kernel_count() << " compiled kernels, launches run node by node\n";
  doc["device_name"] = prop.name;
  save_runtime_cache(config, cache_file);
  return values;
}

std::string dims_text(const std::vector<int64_t>& dims) { return ir::shape_to_string(ir::shape_of(dims)); }

std::string what_runs(const debug::TensorComparison& t) {
  return t.sources == t.op ? t.op : t.op + " (" + t.sources + ")";
}

void print_report(const debug::LayerReport& r) {
  char line[1024];
  std::snprintf(line, sizeof line, "%4s  %-28s %-36s %-9s %-16s %10s %10s %10s  %s\n", "#", "node", "op (sources)", "dtype",
                "shape", "max abs", "max rel", "rel L2", "result");
  std::cout << line;
  for (const auto& t : r.tensors) {
    std::string dims = t.dims.empty() && !t.compared ? "" : dims_text(t.dims);
    if (t.compared)
      std::snprintf(line, sizeof line, "%4zu  %-28s %-36s %-9s %-16s %10.3g %10.3g %10.3g  %s\n", t.node, t.node_name.c_str(),
                    what_runs(t).c_str(), std::string(dtype_name(t.dtype)).c_str(), dims.c_str(), t.max_abs_error,
                    t.max_rel_error, t.relative_l2, t.pass ? "pass" : "FAIL");
    else
      std::snprintf(line, sizeof line, "%4zu  %-28s %-36s %-9s %-16s %32s  not compared: %s\n", t.node, t.node_name.c_str(),
                    what_runs(t).c_str(), std::string(dtype_name(t.dtype)).c_str(), dims.c_str(), "", t.why_not.c_str());
    std::cout << line;
    if (t.tensor != t.node_name || (t.compared && t.reference_tensor != t.tensor))
      std::cout << "      tensor " << t.tensor
                << (t.compared && t.reference_tensor != t.tensor ? ", the model's " + t.reference_tensor : "") << "\n";
  }
  std::cout << r.compared << " tensors compared, " << r.failed << " beyond rtol " << r.tolerance.rtol << ", atol "
            << r.tolerance.atol << ", " << r.not_comparable << " not comparable\n";
  if (!r.first_failure) return;
  const auto& t = r.tensors[*r.first_failure];
  std::cout << "first failure: node '" << t.node_name << "' (" << what_runs(t) << "), tensor '" << t.tensor << "' "
            << dtype_name(t.dtype) << dims_text(t.dims) << ": max abs error " << t.max_abs_error << ", max rel error "
            << t.max_rel_error << ", relative L2 " << t.relative_l2 << "; " << t.beyond << " of " << t.elements
            << " elements beyond atol + rtol * max(|reference|, RMS " << t.reference_rms << ") (first: element " << t.first_beyond << ", got "
            << t.got_at_first << ", reference " << t.reference_at_first << ")\n";
  std::cout << "  its inputs:\n";
  for (const auto& in : r.first_failure_inputs)
    std::cout << "    " << in.tensor << " " << dtype_name(in.dtype) << dims_text(in.dims) << " (" << in.source << "): min "
              << in.min << " max " << in.max << " mean " << in.mean << "\n";
}

Json comparison_json(const debug::TensorComparison& t) {
  Json j = {{"node", t.node_name}, {"node_index", t.node},  {"op", t.op},          {"sources", t.sources},
            {"tensor", t.tensor},  {"dtype", dtype_name(t.dtype)}, {"dims", t.dims}, {"compared", t.compared}};
  if (!t.compared) {
    j["why_not"] = t.why_not;
    return j;
  }
  j["reference_tensor"] = t.reference_tensor;
  j["max_abs_error"] = t.max_abs_error;
  j["max_rel_error"] = t.max_rel_error;
  j["relative_l2"] = t.relative_l2;
  j["reference_rms"] = t.reference_rms;
  j["elements"] = t.elements;
  j["elements_beyond_tolerance"] = t.beyond;
  j["pass"] = t.pass;
  if (t.beyond) j["first_beyond"] = {{"element", t.first_beyond}, {"got", t.got_at_first}, {"reference", t.reference_at_first}};
  return j;
}

Json report_json(const debug::LayerReport& r) {
  Json j = {{"reference", r.reference},
            {"tolerance", {{"rtol", r.tolerance.rtol}, {"atol", r.tolerance.atol}}},
            {"compared", r.compared},
            {"failed", r.failed},
            {"not_comparable", r.not_comparable},
            {"tensors", Json::array()}};
  for (const auto& t : r.tensors) j["tensors"].push_back(comparison_json(t));
  if (r.first_failure) {
    Json first = comparison_json(r.tensors[*r.first_failure]);
    first["inputs"] = Json::array();
    for (const auto& in : r.first_failure_inputs)
      first["inputs"].push_back({{"tensor", in.tensor}, {"source", in.source}, {"dtype", dtype_name(in.dtype)},
                                 {"dims", in.dims}, {"min", in.min}, {"max", in.max}, {"mean", in.mean}});
    j["first_failure"] = std::move(first);
  }
  return j;
}

}  // namespace

int cmd_debug(const DebugOptions& options, Json& doc) {
  if (!options.compare_layers)
    fail(ErrorCode::kInvalidArgument, "kiln debug needs --compare-layers, the check it runs (see kiln debug --help)");
  // Loaded before the inputs are bound: its errors are the model's (exit 4), not the inputs'.
  std::optional<ir::Network> model;
  if (!options.model_file.empty()) model = onnx::load_model(options.model_file);
  RunSetup setup = set_up_run(options.run, options.load_inputs_dir,
                              "usage: kiln debug MODEL.onnx|PLAN.kiln --compare-layers [--device cuda|cpu] [--shapes ...]");
  if (!setup.plan && model)
    fail(ErrorCode::kInvalidArgument, "--model names the model a plan was built from; ", setup.model, " is a model itself");
  if (!setup.plan) model = setup.net;
  std::string reference = options.reference.empty() ? (model ? "model" : "plan") : options.reference;
  bool cpu = options.run.runtime.device == "cpu";
  if ((reference == "model" || reference == "onnxruntime") && !model)
    fail(ErrorCode::kInvalidArgument, "--reference ", reference, ": ", setup.model,
         " is a plan; name the ONNX model it was built from with --model MODEL.onnx");
  if (cpu && reference == "plan")
    fail(ErrorCode::kInvalidArgument, "--device cpu runs the plan's own network on the reference interpreter and compares it "
         "with the model (--reference model", setup.plan ? ", and --model MODEL.onnx for a plan)" : ")");

  if (!cpu) require_gpu();
  plan::Plan p = setup.plan ? std::move(*setup.plan) : build_for_run(setup.net, setup.inputs, options.run.precision);
  debug::Tolerance tol = debug::default_tolerance(p.precision);
  if (options.run.rtol >= 0) tol.rtol = options.run.rtol;
  if (options.run.atol >= 0) tol.atol = options.run.atol;
  doc["model"] = setup.model;
  doc["device"] = options.run.runtime.device;
  doc["seed"] = options.run.seed;
  doc["precision"] = plan::precision_name(p.precision);
  doc["inputs"] = Json::array();
  for (ir::ValueId id : setup.net.inputs()) {
    const reference::Tensor& t = setup.inputs.at(setup.net.value(id).name);
    doc["inputs"].push_back({{"name", setup.net.value(id).name}, {"dtype", dtype_name(t.dtype)}, {"dims", t.dims}});
  }

  std::map<std::string, ir::TensorData> got;
  if (cpu) {
    std::cout << "device: cpu: the plan's network on the reference interpreter\n";
    got = reference::run_every_tensor(p.network, setup.inputs);
  } else {
    got = run_on_gpu(p, setup.inputs, options.run, doc);
  }
  std::string model_path = setup.plan ? options.model_file : setup.model;
  debug::Oracle onnxruntime{"onnxruntime", [&](const std::set<std::string>& names) {
                              return debug::onnxruntime_tensors(model_path, setup.inputs, names);
                            }};
  std::cout << "compare-layers: a " << plan::precision_name(p.precision) << " plan of " << p.network.nodes().size() << " nodes against "
            << (reference == "onnxruntime" ? "onnxruntime's CPU provider running the model (graph optimizations off)"
                : reference == "model"     ? "the reference interpreter (float64 accumulation) running the model"
                                           : "the reference interpreter (float64 accumulation) running the plan's own network")
            << "; rtol " << tol.rtol << ", atol " << tol.atol << "\n";
  debug::LayerReport report = debug::compare_layers(p, got, reference == "plan" ? nullptr : &*model, setup.inputs, tol,
                                                    reference == "onnxruntime" ? &onnxruntime : nullptr);
  print_report(report);
  doc["compare_layers"] = report_json(report);
  if (report.failed) {
    std::cerr << "kiln debug: " << report.failed << " tensors differ from " << (reference == "onnxruntime" ? "onnxruntime" : "the reference")
              << " beyond the tolerance; the first is '"
              << report.tensors[*report.first_failure].tensor << "' of node '" << report.tensors[*report.first_failure].node_name
              << "'\n";
    return kMismatch;
  }
  return kOk;
}

}  // namespace kiln::cli
