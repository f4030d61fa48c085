// Small command-line plumbing shared by the kiln subcommands.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "kiln/error.h"
#include "kiln/reference.h"
#include "kiln/runtime.h"

namespace kiln::cli {

// Exit codes a script can rely on (also listed in `kiln --help`).
enum Exit : int {
  kOk = 0,
  kTestsFailed = 1,    // conformance cases failed
  kUsage = 2,          // bad command line
  kUnreadable = 3,     // file missing, unreadable or not decodable
  kBadModel = 4,       // model invalid or using something kiln does not support
  kRunFailed = 5,      // inputs rejected or execution failed
};

int exit_code_for(const Error& e);
// Called once a command has loaded its model and starts binding inputs: from
// then on shape and type errors are the inputs' (kRunFailed), not the model's.
void begin_input_phase();

// Parses "--flag value" / "--flag=value" options; flags in `repeatable` may
// appear more than once. Everything else is positional.
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> options;

  bool has(const std::string& flag) const { return options.count(flag) != 0; }
  std::string get(const std::string& flag, const std::string& fallback = "") const;
  const std::vector<std::string>& all(const std::string& flag) const;
};
Args parse_args(int argc, char** argv, int first, const std::vector<std::string>& value_flags,
                const std::vector<std::string>& bool_flags);

// "a:1x3x224x224,b:4" (one or more such specs) -> {a: [1,3,224,224], b: [4]}
std::map<std::string, std::vector<int64_t>> parse_shapes(const std::vector<std::string>& specs);

// Random, seeded, non-zero tensor data (small positive integers for integer dtypes).
reference::Tensor random_tensor(DType dtype, const std::vector<int64_t>& dims, std::mt19937_64& rng);
double percentile(std::vector<double> v, double q);
// A non-negative count given to `flag`.
int parse_count(const std::string& text, const char* flag);

// The runtime cache file and how far it is trusted.
struct CacheFile {
  std::filesystem::path path;
  runtime::CacheFilePolicy policy;  // --shared-runtime-cache: trust a file others can write
};
// --runtime-cache PATH, `off`, or the per-user default.
std::optional<CacheFile> runtime_cache_path(const Args& args);
// --shared-runtime-cache
runtime::CacheFilePolicy cache_file_policy(const Args& args);
// --kernel-specialization lazy (default) | eager | none.
runtime::KernelSpecialization kernel_specialization(const Args& args);
// A runtime config for the current device that prints progress as `who` and
// loads the runtime cache file, if any (problems with it are warnings).
runtime::RuntimeConfig gpu_config(const char* who, const std::optional<CacheFile>& cache_file,
                                  runtime::KernelSpecialization strategy, runtime::CudaGraphStrategy graphs);
// --cuda-graphs whole_graph_capture (default) | disabled.
runtime::CudaGraphStrategy cuda_graph_strategy(const Args& args);
// One line of a context's CUDA graph counters, then its fallbacks by reason.
void print_graph_stats(const runtime::ExecutionContext& context);
// Saves the config's cache back to its file (merging what others wrote).
void save_runtime_cache(const char* who, const runtime::RuntimeConfig& config,
                        const std::optional<CacheFile>& cache_file);

int cmd_inspect(const Args& args);
int cmd_build(const Args& args);
// A model path is a plan when the file starts with the plan magic.
bool is_plan_file(const std::string& path);
int cmd_run(const Args& args);
int cmd_conformance(const Args& args);
int cmd_cache(const Args& args);
int cmd_bench(const Args& args);

}  // namespace kiln::cli
