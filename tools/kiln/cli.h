// Small command-line plumbing shared by the kiln subcommands. main.cpp turns
// the command line into the option structs below (CLI11); the commands never
// see argv.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/logging.h"
#include "kiln/reference.h"
#include "kiln/runtime.h"

namespace kiln::cli {

// Exit codes a script can rely on (also listed in `kiln --help` and README.md).
enum Exit : int {
  kOk = 0,
  kTestsFailed = 1,    // conformance cases failed
  kUsage = 2,          // bad command line
  kUnreadable = 3,     // file missing, unreadable or not decodable
  kBadModel = 4,       // model invalid or using something kiln does not support
  kRunFailed = 5,      // inputs rejected or execution failed
  kMismatch = 6,       // run --compare-reference, debug --compare-layers: tensors beyond --rtol/--atol
};

int exit_code_for(const Error& e);
// Sends kiln's log (the library's and the commands' own lines) to stderr as
// "kiln run: warning: ...", dropping what is less severe than `minimum`.
void log_to_stderr(const std::string& command, Severity minimum);
// Called once a command has loaded its model and starts binding inputs: from
// then on shape and type errors are the inputs' (kRunFailed), not the model's.
void begin_input_phase();

// The document `--json` prints on stdout. Commands always fill it (in the
// order fields are added); main prints it only with --json, and meanwhile
// sends the human text of std::cout to stderr.
using Json = nlohmann::ordered_json;
// [1, 3, "N", "N*2"]: constant dims as numbers, symbolic ones as text.
Json shape_json(const ir::Shape& shape);
// {symbol: {min, opt, max}}: a plan's ranges or one of its profiles.
Json ranges_json(const ir::DimRanges& ranges);
// NaN and infinities have no JSON spelling: each becomes null, and a line in
// the returned notes says where it was ("/outputs/0/max: inf").
std::vector<std::string> make_finite(Json& doc);

// The model file, given as the positional argument or with trtexec's --onnx
// (an ONNX model) or --loadEngine (a plan).
struct ModelArg {
  std::string positional, onnx, engine;
};
// The one path given; an error when none or several are, or when --onnx names
// a plan or --loadEngine a file that is not one.
std::string model_path(const ModelArg& model, const char* usage);

// The runtime settings of run and bench on the GPU.
struct RuntimeFlags {
  std::string runtime_cache;  // FILE, `off`, or empty: the per-user default
  bool shared_runtime_cache = false;
  std::string kernel_specialization = "lazy";
  std::string cuda_graphs = "whole_graph_capture";
  std::string device = "cuda";  // cuda (the current device) or cuda:N; run also takes cpu
};

struct InspectOptions {
  ModelArg model;
  bool dump = false;
};

struct BuildOptions {
  ModelArg model;
  std::string output;
  std::string precision = "fp32";
  std::vector<std::string> profiles;  // NAME:MIN/OPT/MAX, each a DxD... shape
  // trtexec's spelling of profiles: NAME:DIMS[,...] per bound.
  std::vector<std::string> min_shapes, opt_shapes, max_shapes;
  std::vector<std::string> data_dependent_bounds;  // NAME=N: the largest size of a tensor whose size depends on data
};

struct RunOptions {
  ModelArg model;
  int profile_index = 0;  // the plan's optimization profile to run
  std::vector<std::string> shapes, inputs;
  std::string output_dir;
  uint64_t seed = 0;
  std::string precision = "fp32";
  // Warm-up: at least `warmup` runs and `warmup_ms`; timed: at least
  // `iterations` runs and `duration_s` (trtexec's --warmUp and --duration).
  int warmup = 10, iterations = 100;
  double warmup_ms = 0, duration_s = 0;
  bool compare_reference = false, verbose = false;
  // --compare-reference: an element passes when |got - want| <= atol + rtol * |want|;
  // negative: the defaults for the plan's precision.
  double rtol = -1, atol = -1;
  std::string save_inputs_dir;
  // kiln profile (run --dumpProfile): time every launch over `profile_iterations` passes.
  bool profile_kernels = false;
  int profile_iterations = 20;
  RuntimeFlags runtime;  // device: cpu by default (main sets it)
};

// kiln debug --compare-layers: the model, inputs and tolerances as run takes
// them (run.runtime.device: cuda, cuda:N or cpu).
struct DebugOptions {
  RunOptions run;
  bool compare_layers = false;
  std::string load_inputs_dir;  // DIR/NAME.npy per input, as run --save-inputs writes them
  std::string model_file;       // --model: the ONNX model a plan was built from
  std::string reference;        // model | plan; empty: model when there is one
};

struct BenchOptions {
  ModelArg plan;
  int profile_index = 0;  // the optimization profile every context of the plan selects
  std::vector<std::string> traces, static_plans;
  int repeat = 2, iterations = 100, settle_ms = 30000;
  int streams = 0;  // > 0: also the throughput of that many streams (threads, contexts) per shape
  double duration_s = 0;  // the steady state of each shape runs at least this long
  bool manual_capture = false;
  std::string json_file;
  RuntimeFlags runtime;
};

struct CacheOptions {
  std::string verb, file;  // info | clear | warm
  std::string arch, cache;
  std::vector<std::string> shapes;
  bool shared_runtime_cache = false;
};

struct ConformanceOptions {
  std::string dir, device = "cpu", filter;
  bool verbose = false, specialized = false;
};

// The model or plan a run names and the inputs it runs on: --input files, then
// `load_dir`/NAME.npy (run --save-inputs' names), then random ones (seeded;
// dims from --shapes, else the selected profile's opt values, else 1),
// checked against the plan's selected profile.
struct RunSetup {
  std::string model;
  std::optional<plan::Plan> plan;
  ir::Network net;
  std::map<std::string, reference::Tensor> inputs;
};
RunSetup set_up_run(const RunOptions& options, const std::string& load_dir, const char* usage);
// An ONNX model run on the GPU is built on the fly; symbolic dims get the given shapes as their range.
plan::Plan build_for_run(const ir::Network& net, const std::map<std::string, reference::Tensor>& inputs,
                         const std::string& precision);
// A tensor name as a file name: characters other than letters, digits, '-' and '.' become '_'.
std::string safe_file_name(const std::string& name);

// --profile-index: an error (naming `file` and its profiles) unless `plan` has profile `index`.
void check_profile_index(const plan::Plan& plan, int index, const std::string& file);

// Dims like "1x3x224x224" ("" is a scalar); `what` names the flag and item in errors.
std::vector<int64_t> parse_dims(const std::string& text, const std::string& what);
// `--shapes a:1x3x224x224,b:4` (one or more such specs) -> {a: [1,3,224,224], b: [4]}.
// A name may hold ':' (the dims follow the last one) and ',' (an item ends at
// a comma that follows ":DIMS").
std::map<std::string, std::vector<int64_t>> parse_shapes(const std::vector<std::string>& specs, const char* flag);
// `--input NAME:FILE.npy`: NAME is the longest prefix before a ':' that names
// an input of `net`, so both names and paths may hold ':'.
std::pair<std::string, std::string> split_input_spec(const std::string& spec, const ir::Network& net);

// Random, seeded, non-zero tensor data (small positive integers for integer dtypes).
reference::Tensor random_tensor(DType dtype, const std::vector<int64_t>& dims, std::mt19937_64& rng);
double percentile(std::vector<double> v, double q);
// Call times in microseconds, one call at a time: qps is 1e6 / mean.
struct Latency {
  size_t runs = 0;
  double min = 0, max = 0, mean = 0, p50 = 0, p90 = 0, p99 = 0, qps = 0;
};
Latency summarize(const std::vector<double>& us);
std::string latency_text(const Latency& l);  // "p50 X p90 X p99 X mean X min X max X qps X"
Json latency_json(const Latency& l);

// The runtime cache file and how far it is trusted.
struct CacheFile {
  std::filesystem::path path;
  runtime::CacheFilePolicy policy;  // --shared-runtime-cache: trust a file others can write
};
// --runtime-cache PATH, `off`, or the per-user default.
std::optional<CacheFile> runtime_cache_path(const RuntimeFlags& flags);
// A runtime config for the current device that loads the runtime cache file,
// if any (problems with it are logged as warnings).
runtime::RuntimeConfig gpu_config(const std::optional<CacheFile>& cache_file, const RuntimeFlags& flags);
// One line of a context's CUDA graph counters, then its fallbacks by reason.
void print_graph_stats(const runtime::ExecutionContext& context);
// The same counters as a JSON object.
Json graph_stats_json(const runtime::ExecutionContext& context);
// Saves the config's cache back to its file (merging what others wrote).
void save_runtime_cache(const runtime::RuntimeConfig& config, const std::optional<CacheFile>& cache_file);

// Which nodes of a plan the GPU runtime cannot run, and which it runs on the
// host inside the GPU engine (nodes on string tensors), grouped by op and
// reason (in op-name order), from runtime::gpu_support.
struct GpuSupportReport {
  size_t nodes = 0, supported = 0;
  struct Group {
    std::string op, reason;
    std::vector<std::string> nodes;
  };
  std::vector<Group> unsupported;
  std::vector<Group> on_host;  // supported; the reason is how they run
};
GpuSupportReport gpu_support_report(const plan::Plan& plan);
// One line per group: "Einsum (2 nodes: a, b): no GPU kernel yet" (long node lists shortened).
std::vector<std::string> gpu_support_lines(const std::vector<GpuSupportReport::Group>& groups);
// {nodes, supported, unsupported: [{op, reason, nodes: [name]}], on_host: [{op, reason, nodes: [name]}]}
Json gpu_support_json(const GpuSupportReport& report);

struct OpsOptions {
  bool markdown = false;
};

int cmd_inspect(const InspectOptions& options, Json& doc);
int cmd_build(const BuildOptions& options, Json& doc);
// A model path is a plan when the file starts with the plan magic.
bool is_plan_file(const std::string& path);
int cmd_run(const RunOptions& options, Json& doc);
int cmd_conformance(const ConformanceOptions& options, Json& doc);
int cmd_cache(const CacheOptions& options, Json& doc);
int cmd_bench(const BenchOptions& options, Json& doc);
int cmd_debug(const DebugOptions& options, Json& doc);
int cmd_ops(const OpsOptions& options, Json& doc);

}  // namespace kiln::cli
