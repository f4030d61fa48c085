// Helpers shared by the subcommands (random inputs, counts, the GPU runtime config).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "cli.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/plan.h"

namespace kiln::cli {

Json shape_json(const ir::Shape& shape) {
  Json dims = Json::array();
  for (const ir::Dim& d : shape) {
    if (d.is_constant()) dims.push_back(d.constant());
    else dims.push_back(d.to_string());
  }
  return dims;
}

Json ranges_json(const ir::DimRanges& ranges) {
  Json out = Json::object();
  for (auto& [symbol, r] : ranges) out[symbol] = {{"min", r.min}, {"opt", r.opt}, {"max", r.max}};
  return out;
}

namespace {
void make_finite(Json& j, const std::string& path, std::vector<std::string>& notes) {
  if (j.is_number_float() && !std::isfinite(j.get<double>())) {
    double v = j.get<double>();
    notes.push_back(path + ": " + (std::isnan(v) ? "NaN" : v > 0 ? "inf" : "-inf"));
    j = nullptr;
  } else if (j.is_object()) {
    for (auto& [key, value] : j.items()) make_finite(value, path + "/" + key, notes);
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) make_finite(j[i], path + "/" + std::to_string(i), notes);
  }
}
}  // namespace

std::vector<std::string> make_finite(Json& doc) {
  std::vector<std::string> notes;
  make_finite(doc, "", notes);
  return notes;
}

std::string model_path(const ModelArg& model, const char* usage) {
  int given = !model.positional.empty() + !model.onnx.empty() + !model.engine.empty();
  if (given == 0) fail(ErrorCode::kInvalidArgument, "no model given; ", usage);
  if (given > 1) fail(ErrorCode::kInvalidArgument, "give the model once: as MODEL, --onnx FILE or --loadEngine PLAN");
  if (!model.onnx.empty() && is_plan_file(model.onnx))
    fail(ErrorCode::kInvalidArgument, "--onnx ", model.onnx, " is a kiln plan; give it with --loadEngine or as MODEL");
  if (!model.engine.empty() && std::filesystem::exists(model.engine) && !is_plan_file(model.engine))
    fail(ErrorCode::kInvalidArgument, "--loadEngine ", model.engine, " is not a kiln plan; give an ONNX model with --onnx or as MODEL");
  return !model.positional.empty() ? model.positional : !model.onnx.empty() ? model.onnx : model.engine;
}

void check_profile_index(const plan::Plan& plan, int index, const std::string& file) {
  size_t n = plan.profiles.size();
  if (index < 0 || size_t(index) >= n)
    fail(ErrorCode::kInvalidArgument, "--profile-index ", index, ": ", file, " has ", n,
         n == 1 ? " optimization profile (0)" : str(" optimization profiles (0 to ", n - 1, ")"), "; kiln inspect lists them");
}

std::vector<int64_t> parse_dims(const std::string& text, const std::string& what) {
  std::vector<int64_t> dims;
  if (text.empty()) return dims;  // a scalar
  size_t at = 0;
  while (true) {
    size_t x = text.find('x', at);
    std::string num = text.substr(at, x == std::string::npos ? std::string::npos : x - at);
    if (num.empty() || num.size() > 12 || num.find_first_not_of("0123456789") != std::string::npos)
      fail(ErrorCode::kInvalidArgument, what, " has a bad dim '", num, "' (dims are numbers joined by x, like 1x3x224x224)");
    dims.push_back(std::stoll(num));
    if (x == std::string::npos) return dims;
    at = x + 1;
  }
}

namespace {
// True when `text` could be the dims after a name: digits and x only.
bool looks_like_dims(const std::string& text) { return text.find_first_not_of("0123456789x") == std::string::npos; }
}  // namespace

std::map<std::string, std::vector<int64_t>> parse_shapes(const std::vector<std::string>& specs, const char* flag) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const std::string& spec : specs) {
    // Items end at a comma that follows ":DIMS"; any other comma is part of a name.
    std::vector<std::string> items;
    std::string item;
    size_t start = 0;
    while (true) {
      size_t comma = spec.find(',', start);
      item += spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      size_t colon = item.rfind(':');
      bool complete = colon != std::string::npos && looks_like_dims(item.substr(colon + 1));
      if (comma == std::string::npos) {
        items.push_back(item);
        break;
      }
      if (complete) {
        items.push_back(item);
        item.clear();
      } else {
        item += ',';
      }
      start = comma + 1;
    }
    for (const std::string& it : items) {
      size_t colon = it.rfind(':');
      if (colon == std::string::npos || colon == 0)
        fail(ErrorCode::kInvalidArgument, flag, " item '", it, "' must look like name:1x3x224x224");
      std::string name = it.substr(0, colon);
      if (out.count(name)) fail(ErrorCode::kInvalidArgument, flag, " gives '", name, "' twice");
      out[name] = parse_dims(it.substr(colon + 1), str(flag, " item '", it, "'"));
    }
  }
  return out;
}

std::pair<std::string, std::string> split_input_spec(const std::string& spec, const ir::Network& net) {
  for (size_t colon = spec.rfind(':'); colon != std::string::npos && colon > 0; colon = spec.rfind(':', colon - 1)) {
    auto id = net.find_value(spec.substr(0, colon));
    if (id && net.value(*id).is_input) return {spec.substr(0, colon), spec.substr(colon + 1)};
  }
  std::string inputs;
  for (ir::ValueId id : net.inputs()) inputs += (inputs.empty() ? "" : ", ") + net.value(id).name;
  if (spec.find(':') == std::string::npos)
    fail(ErrorCode::kInvalidArgument, "--input '", spec, "' must look like name:file.npy (inputs: ", inputs, ")");
  fail(ErrorCode::kInvalidArgument, "--input '", spec, "' names no input of the model before a ':' (inputs: ", inputs, ")");
}

reference::Tensor random_tensor(DType dtype, const std::vector<int64_t>& dims, std::mt19937_64& rng) {
  int64_t n = ir::checked_numel(dims);
  if (n > (int64_t(1) << 31)) fail(ErrorCode::kInvalidArgument, "an input of ", n, " elements is too large to generate");
  if (is_string(dtype)) {  // words of 1 to 8 lowercase letters
    reference::Tensor t;
    t.dtype = dtype;
    t.dims = dims;
    std::uniform_int_distribution<int> length(1, 8), letter('a', 'z');
    for (int64_t i = 0; i < n; ++i) {
      std::string& word = t.strings.emplace_back(size_t(length(rng)), ' ');
      for (char& ch : word) ch = char(letter(rng));
    }
    return t;
  }
  std::vector<double> v(static_cast<size_t>(n));
  std::uniform_real_distribution<double> magnitude(0.1, 1.0);
  std::uniform_int_distribution<int> small(1, 9), coin(0, 1);
  for (double& e : v) {
    if (is_floating(dtype)) e = magnitude(rng) * (coin(rng) ? 1 : -1);
    else if (dtype == DType::kBool) e = coin(rng);
    else e = small(rng);
  }
  return reference::make_tensor(dtype, dims, v);
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, size_t(q * double(v.size())))];
}

Latency summarize(const std::vector<double>& us) {
  Latency l;
  l.runs = us.size();
  if (us.empty()) return l;
  l.min = *std::min_element(us.begin(), us.end());
  l.max = *std::max_element(us.begin(), us.end());
  for (double x : us) l.mean += x;
  l.mean /= double(us.size());
  l.p50 = percentile(us, 0.5);
  l.p90 = percentile(us, 0.9);
  l.p99 = percentile(us, 0.99);
  l.qps = l.mean > 0 ? 1e6 / l.mean : 0;
  return l;
}

std::string latency_text(const Latency& l) {
  return str("p50 ", l.p50, " p90 ", l.p90, " p99 ", l.p99, " mean ", l.mean, " min ", l.min, " max ", l.max, " qps ", l.qps);
}

Json latency_json(const Latency& l) {
  return {{"runs", l.runs}, {"min", l.min}, {"max", l.max}, {"mean", l.mean}, {"p50", l.p50},
          {"p90", l.p90},   {"p99", l.p99}, {"qps", l.qps}};
}

std::optional<CacheFile> runtime_cache_path(const RuntimeFlags& flags) {
  if (flags.runtime_cache == "off") return std::nullopt;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  std::filesystem::path path;
  if (!flags.runtime_cache.empty()) path = flags.runtime_cache;
  else if (xdg && *xdg) path = std::filesystem::path(xdg) / "kiln" / "runtime_cache.bin";
  else if (home && *home) path = std::filesystem::path(home) / ".cache" / "kiln" / "runtime_cache.bin";
  else return std::nullopt;
  runtime::CacheFilePolicy policy;
  policy.shared = flags.shared_runtime_cache;
  return CacheFile{path, policy};
}

namespace {
class StderrLogger : public Logger {
 public:
  explicit StderrLogger(std::string command) : command_(std::move(command)) {}
  void log(Severity severity, std::string_view message) override {
    std::string line = command_ + ": ";
    if (severity == Severity::kError || severity == Severity::kWarning) line += str(severity_name(severity), ": ");
    line.append(message);
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stderr);  // one write: lines of compile threads never interleave
  }

 private:
  std::string command_;
};
}  // namespace

void log_to_stderr(const std::string& command, Severity minimum) {
  set_logger(std::make_shared<StderrLogger>(command));
  set_log_severity(minimum);
}

void print_graph_stats(const runtime::ExecutionContext& context) {
  auto g = context.graph_stats();
  std::cout << "cuda graphs (" << runtime::cuda_graph_strategy_name(context.cuda_graph_strategy()) << "): " << g.calls
            << " calls, " << g.direct << " direct, " << g.captures << " captures, " << g.instantiations << " instantiations, "
            << g.replays << " replays, " << g.updates << " in-place updates, " << g.pointer_repairs
            << " repairs for new addresses (" << g.pointer_patches << " by rewriting node arguments), " << g.kernel_swaps
            << " for new kernels, " << g.into_caller_capture << " into the caller's capture, " << g.graphs
            << " graphs held\n";
  for (auto& [reason, n] : g.fallbacks) std::cout << "  fallback to direct launches: " << reason << " x" << n << "\n";
}

Json graph_stats_json(const runtime::ExecutionContext& context) {
  auto g = context.graph_stats();
  return {{"strategy", runtime::cuda_graph_strategy_name(context.cuda_graph_strategy())},
          {"calls", g.calls},
          {"direct", g.direct},
          {"captures", g.captures},
          {"instantiations", g.instantiations},
          {"replays", g.replays},
          {"updates", g.updates},
          {"pointer_repairs", g.pointer_repairs},
          {"pointer_patches", g.pointer_patches},
          {"kernel_swaps", g.kernel_swaps},
          {"into_caller_capture", g.into_caller_capture},
          {"graphs", g.graphs},
          {"on_context_stream", g.on_context_stream},
          {"fallbacks", g.fallbacks}};
}

runtime::RuntimeConfig gpu_config(const std::optional<CacheFile>& cache_file, const RuntimeFlags& flags) {
  std::string why;
  if (!runtime::cuda_available(&why)) fail(ErrorCode::kDevice, "--device ", flags.device, ": ", why);
  runtime::RuntimeConfig config;
  // The parser accepted only these names.
  config.dynamic_shapes_kernel_specialization_strategy = *runtime::parse_kernel_specialization(flags.kernel_specialization);
  config.cuda_graph_strategy = *runtime::parse_cuda_graph_strategy(flags.cuda_graphs);
  if (flags.device != "cuda") {  // cuda:N (the parser accepted no other form)
    int index = std::stoi(flags.device.substr(5)), count = 0;
    cudaGetDeviceCount(&count);
    if (index >= count)
      fail(ErrorCode::kDevice, "--device ", flags.device, ": this machine has ", count, " CUDA device", count == 1 ? "" : "s",
           " (cuda:0", count > 1 ? str(" to cuda:", count - 1) : "", ")");
    if (cudaError_t e = cudaSetDevice(index); e != cudaSuccess)
      fail(ErrorCode::kDevice, "--device ", flags.device, ": ", cudaGetErrorString(e));
    config.device = index;
  }
  if (cache_file) {
    config.cache = std::make_shared<runtime::RuntimeCache>(runtime::compiler_version(), cache_file->policy);
    config.cache->load_file(cache_file->path);  // its problems are logged
    int driver = 0, device = 0;
    cudaDriverGetVersion(&driver);
    cudaGetDevice(&device);
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, device);
    config.cache->set_origin(driver, prop.name);
  }
  return config;
}

void save_runtime_cache(const runtime::RuntimeConfig& config, const std::optional<CacheFile>& cache_file) {
  // Nothing new: the file already holds every entry (no rewrite, no fsync).
  // Problems are logged as warnings: the run itself went well.
  if (cache_file && config.cache && config.cache->has_unsaved_entries()) config.cache->save_file(cache_file->path);
}

GpuSupportReport gpu_support_report(const plan::Plan& plan) {
  GpuSupportReport report;
  using Groups = std::map<std::pair<std::string, std::string>, std::vector<std::string>>;  // (op, reason) -> nodes
  Groups unsupported, on_host;
  for (const runtime::NodeSupport& node : runtime::gpu_support(plan)) {
    ++report.nodes;
    if (node.supported) ++report.supported;
    if (!node.supported) unsupported[{std::string(ir::op_name(node.op)), node.reason}].push_back(node.node);
    else if (!node.host_note.empty()) on_host[{std::string(ir::op_name(node.op)), node.host_note}].push_back(node.node);
  }
  for (auto& [key, nodes] : unsupported) report.unsupported.push_back({key.first, key.second, std::move(nodes)});
  for (auto& [key, nodes] : on_host) report.on_host.push_back({key.first, key.second, std::move(nodes)});
  return report;
}

std::vector<std::string> gpu_support_lines(const std::vector<GpuSupportReport::Group>& groups) {
  constexpr size_t kNamesShown = 5;
  std::vector<std::string> lines;
  for (const GpuSupportReport::Group& g : groups) {
    std::string names;
    for (size_t i = 0; i < std::min(g.nodes.size(), kNamesShown); ++i) names += (i ? ", " : "") + g.nodes[i];
    if (g.nodes.size() > kNamesShown) names += str(" and ", g.nodes.size() - kNamesShown, " more");
    lines.push_back(str(g.op, " (", g.nodes.size(), g.nodes.size() == 1 ? " node: " : " nodes: ", names, "): ", g.reason));
  }
  return lines;
}

Json gpu_support_json(const GpuSupportReport& report) {
  auto groups_json = [](const std::vector<GpuSupportReport::Group>& groups) {
    Json out = Json::array();
    for (const GpuSupportReport::Group& g : groups) out.push_back({{"op", g.op}, {"reason", g.reason}, {"nodes", g.nodes}});
    return out;
  };
  return {{"nodes", report.nodes},
          {"supported", report.supported},
          {"unsupported", groups_json(report.unsupported)},
          {"on_host", groups_json(report.on_host)}};
}

}  // namespace kiln::cli
