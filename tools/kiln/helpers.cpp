// Helpers shared by the subcommands (random inputs, counts, the GPU runtime config).
#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "cli.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::cli {

reference::Tensor random_tensor(DType dtype, const std::vector<int64_t>& dims, std::mt19937_64& rng) {
  int64_t n = ir::checked_numel(dims);
  if (n > (int64_t(1) << 31)) fail(ErrorCode::kInvalidArgument, "an input of ", n, " elements is too large to generate");
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

int parse_count(const std::string& text, const char* flag) {
  if (text.empty() || text.size() > 7 || text.find_first_not_of("0123456789") != std::string::npos)
    fail(ErrorCode::kInvalidArgument, flag, " must be a non-negative integer");
  return std::stoi(text);
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, size_t(q * double(v.size())))];
}

runtime::CacheFilePolicy cache_file_policy(const Args& args) {
  runtime::CacheFilePolicy policy;
  policy.shared = args.has("--shared-runtime-cache");
  return policy;
}

std::optional<CacheFile> runtime_cache_path(const Args& args) {
  std::string flag = args.get("--runtime-cache");
  if (flag == "off") return std::nullopt;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  std::filesystem::path path;
  if (!flag.empty()) path = flag;
  else if (xdg && *xdg) path = std::filesystem::path(xdg) / "kiln" / "runtime_cache.bin";
  else if (home && *home) path = std::filesystem::path(home) / ".cache" / "kiln" / "runtime_cache.bin";
  else return std::nullopt;
  return CacheFile{path, cache_file_policy(args)};
}

runtime::KernelSpecialization kernel_specialization(const Args& args) {
  auto strategy = runtime::parse_kernel_specialization(args.get("--kernel-specialization", "lazy"));
  if (!strategy) fail(ErrorCode::kInvalidArgument, "--kernel-specialization must be lazy, eager or none");
  return *strategy;
}

namespace {
void print_warnings(const char* who, const std::vector<std::string>& warnings) {
  for (auto& w : warnings) std::cerr << who << ": warning: " << w << "\n";
}
}  // namespace

runtime::CudaGraphStrategy cuda_graph_strategy(const Args& args) {
  auto strategy = runtime::parse_cuda_graph_strategy(args.get("--cuda-graphs", "whole_graph_capture"));
  if (!strategy) fail(ErrorCode::kInvalidArgument, "--cuda-graphs must be disabled or whole_graph_capture");
  return *strategy;
}

void print_graph_stats(const runtime::ExecutionContext& context) {
  auto g = context.graph_stats();
  std::cout << "cuda graphs (" << runtime::cuda_graph_strategy_name(context.cuda_graph_strategy()) << "): " << g.calls
            << " calls, " << g.direct << " direct, " << g.captures << " captures, " << g.instantiations << " instantiations, "
            << g.replays << " replays, " << g.updates << " in-place updates (" << g.pointer_repairs << " for new addresses, "
            << g.kernel_swaps << " for new kernels), " << g.into_caller_capture << " into the caller's capture, " << g.graphs
            << " graphs held\n";
  for (auto& [reason, n] : g.fallbacks) std::cout << "  fallback to direct launches: " << reason << " x" << n << "\n";
}

runtime::RuntimeConfig gpu_config(const char* who, const std::optional<CacheFile>& cache_file,
                                  runtime::KernelSpecialization strategy, runtime::CudaGraphStrategy graphs) {
  std::string why;
  if (!runtime::cuda_available(&why)) fail(ErrorCode::kDevice, "--device cuda: ", why);
  runtime::RuntimeConfig config;
  config.progress = [who](const std::string& line) { std::cerr << who << ": " << line << "\n"; };
  config.dynamic_shapes_kernel_specialization_strategy = strategy;
  config.cuda_graph_strategy = graphs;
  if (cache_file) {
    config.cache = std::make_shared<runtime::RuntimeCache>(runtime::compiler_version(), cache_file->policy);
    print_warnings(who, config.cache->load_file(cache_file->path));
    int driver = 0, device = 0;
    cudaDriverGetVersion(&driver);
    cudaGetDevice(&device);
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, device);
    config.cache->set_origin(driver, prop.name);
  }
  return config;
}

void save_runtime_cache(const char* who, const runtime::RuntimeConfig& config,
                        const std::optional<CacheFile>& cache_file) {
  // Nothing new: the file already holds every entry (no rewrite, no fsync).
  if (cache_file && config.cache && config.cache->has_unsaved_entries())
    print_warnings(who, config.cache->save_file(cache_file->path).warnings);
}

}  // namespace kiln::cli
