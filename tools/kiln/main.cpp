// kiln: command-line entry point.
#include <algorithm>
#include <cstring>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "kiln/version.h"

namespace kiln::cli {

namespace {

constexpr const char* kHelp = R"(kiln - a JIT inference runtime for NVIDIA GPUs

usage: kiln <command> [options]

commands:
  inspect MODEL.onnx|PLAN.kiln [--dump]
      For a model: inputs and outputs with dtypes and symbolic shapes, op
      histogram, unsupported ops, parameter count and bytes. For a plan:
      precision, ranges, kernels, fused groups, arena and weight bytes.
      --dump prints the whole (lowered) network with inferred shapes.
  build MODEL.onnx -o PLAN.kiln [--precision fp32|fp16|bf16]
                   [--profile NAME:MINxD/OPTxD/MAXxD ...]
      Builds a plan ahead of time (no GPU needed): constant folding, fusion
      (matmul epilogues, elementwise chains, attention), channels-last
      convolutions in fp16/bf16, precision, memory planning. Every symbolic input dim needs a range,
      from --profile (repeat per input) or from the model.
  run MODEL.onnx|PLAN.kiln [--device cpu|cuda] [--shapes NAME:1x3x224x224,...]
                 [--input NAME:FILE.npy ...] [--output-dir DIR] [--seed N]
                 [--precision fp32|fp16|bf16] [--warmup N] [--iterations N]
                 [--compare-reference] [--runtime-cache FILE|off]
                 [--shared-runtime-cache] [--kernel-specialization lazy|eager|none]
                 [--cuda-graphs whole_graph_capture|disabled] [--verbose]
      Runs the model once and prints each output's shape and statistics;
      --output-dir writes one NAME.npy per output. Inputs not given with
      --input are random (seeded, non-zero). Symbolic dims come from --shapes,
      else from the profile's opt value, else 1.
      --device cpu (default) uses the reference interpreter. --device cuda
      runs a plan on the GPU (an ONNX model is built first, in --precision,
      for exactly the given shapes) and reports latency p50/p90/p99/mean
      over --iterations runs after --warmup runs, and GPU time per run.
      --compare-reference prints each output's max abs/rel error against
      the reference interpreter. --kernel-specialization (default lazy):
      lazy runs generic kernels at a new shape and swaps in shape-specialized
      ones compiled in the background; eager compiles them before the first
      call; none never specializes. --cuda-graphs (default
      whole_graph_capture): the context captures its launches into a CUDA
      graph per input shape after one direct call, replays it, and repairs it
      when addresses change or specialized kernels arrive; disabled launches
      every kernel each call. --verbose prints the graph counters (captures,
      replays, repairs, fallbacks with reasons) and, per shape, how many
      launches run generic, specialized or pending kernels.
  bench PLAN.kiln --trace NAME:1x7x512[,...] [--trace ...] [--repeat N]
                  [--iterations N] [--kernel-specialization lazy|eager|none]
                  [--cuda-graphs whole_graph_capture|disabled]
                  [--runtime-cache FILE|off] [--shared-runtime-cache]
                  [--settle-ms N] [--json FILE]
                  [--static-plan PLAN.kiln ...] [--manual-capture]
      Latency over a trace of input shapes (one --trace per call, in order,
      the whole trace --repeat times, default 2), each call timed from
      binding its inputs to the end of a stream synchronize; then per shape
      the first, second and steady-state call (median of --iterations, taken
      once no kernel waits for its specialized variant, waiting at most
      --settle-ms). Each --static-plan (a plan built for one shape of the
      trace) runs on its own engine, timed in rounds alternating with the
      trace's engine at that shape. --manual-capture also times, per shape,
      the kernels of the steady state captured by hand into a graph (native
      graphs off) and replayed. Inputs are random; --json writes every timing.
  cache info FILE | cache clear FILE [--shared-runtime-cache]
  cache warm PLAN.kiln --arch sm_90 --cache FILE [--shapes x:4x256,mask:4x16 ...]
             [--shared-runtime-cache]
      The runtime cache: compiled kernels keyed by source, options, arch and
      NVRTC version, and cuDNN's algorithm choices (made on a GPU). `info` prints `entries: N`, `bytes: N` and per-arch
      counts; `clear` empties the file; `warm` compiles the plan's kernels for
      an architecture into the file, no GPU needed, and for each --shapes set
      (the flag repeats) the kernels specialized for those shapes. `kiln run --device cuda`
      uses --runtime-cache FILE (default $XDG_CACHE_HOME/kiln/runtime_cache.bin,
      `off` to disable). The cache holds code that runs on the GPU, so a cache
      file or folder owned by another user or writable by group or others is
      not used (a warning says why; kernels compile afresh) and `clear` and
      `warm` fail on it; --shared-runtime-cache (also for run and bench)
      trusts such a file: use it only for a cache shared on purpose with
      people you trust. `info` reads only (it prints whether the file is
      trusted); `clear` and `warm` refuse a file that is not a runtime cache
      and exit non-zero when the file could not be written.
  conformance DIR [--device cpu|plan|cuda] [--filter TEXT] [--verbose] [--specialized]
      Runs a folder of ONNX backend node tests (each a folder with model.onnx
      and test_data_set_*), prints one line per test (--verbose) or per
      failure, a per-op table, and last `N passed, N failed, N skipped`.
      --device plan builds each test into an fp32 plan and runs the plan's
      lowered network on the reference interpreter (checks the builder);
      --device cuda runs that plan on the GPU with the generic kernels, or with
      kernels specialized for each test's shapes (--specialized).

exit codes:
  0 success   1 conformance failures   2 bad command line
  3 file missing or undecodable   4 model invalid or unsupported
  5 run failed (bad inputs, no usable GPU, CUDA error)
)";

}  // namespace

namespace {
bool inputs_bound = false;
}  // namespace

void begin_input_phase() { inputs_bound = true; }

int exit_code_for(const Error& e) {
  switch (e.code()) {
    case ErrorCode::kInvalidArgument: return kUsage;
    case ErrorCode::kIoError:
    case ErrorCode::kParseError: return kUnreadable;
    case ErrorCode::kInvalidModel:
    case ErrorCode::kUnsupported: return kBadModel;
    // Shapes and dtypes that do not fit are the model's fault while it loads
    // and builds, and the given inputs' once a command binds them.
    case ErrorCode::kShapeError:
    case ErrorCode::kTypeError: return inputs_bound ? kRunFailed : kBadModel;
    default: return kRunFailed;
  }
}

std::string Args::get(const std::string& flag, const std::string& fallback) const {
  auto it = options.find(flag);
  return it == options.end() || it->second.empty() ? fallback : it->second.back();
}

const std::vector<std::string>& Args::all(const std::string& flag) const {
  static const std::vector<std::string> kNone;
  auto it = options.find(flag);
  return it == options.end() ? kNone : it->second;
}

Args parse_args(int argc, char** argv, int first, const std::vector<std::string>& value_flags,
                const std::vector<std::string>& bool_flags) {
  Args args;
  auto known = [](const std::vector<std::string>& list, const std::string& f) {
    return std::find(list.begin(), list.end(), f) != list.end();
  };
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-o") a = "--output";
    if (a.rfind("--", 0) != 0 || a == "--") {
      args.positional.push_back(a);
      continue;
    }
    std::string flag = a, value;
    bool inline_value = false;
    if (size_t eq = a.find('='); eq != std::string::npos) {
      flag = a.substr(0, eq);
      value = a.substr(eq + 1);
      inline_value = true;
    }
    if (known(bool_flags, flag)) {
      if (inline_value) fail(ErrorCode::kInvalidArgument, flag, " takes no value");
      args.options[flag].push_back("1");
    } else if (known(value_flags, flag)) {
      if (!inline_value) {
        if (i + 1 >= argc) fail(ErrorCode::kInvalidArgument, flag, " needs a value");
        value = argv[++i];
      }
      args.options[flag].push_back(value);
    } else {
      fail(ErrorCode::kInvalidArgument, "unknown option ", flag, " (see kiln --help)");
    }
  }
  return args;
}

// The part of kHelp about one command ("" for an unknown one): its lines up
// to the next command, a blank line or an unindented heading.
std::string command_help(const std::string& command) {
  std::istringstream help(kHelp);
  std::string line, out;
  bool inside = false;
  while (std::getline(help, line)) {
    bool command_line = line.size() > 2 && line.compare(0, 2, "  ") == 0 && line[2] != ' ';
    if (command_line) inside = line.compare(2, command.size() + 1, command + " ") == 0;
    else if (line.empty() || line[0] != ' ') inside = false;
    if (inside) out += (out.empty() ? "usage: kiln " + line.substr(2) : line) + "\n";
  }
  return out;
}

}  // namespace kiln::cli

int main(int argc, char** argv) {
  using namespace kiln::cli;
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    std::cout << kHelp;
    return argc < 2 ? kUsage : kOk;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::cout << "kiln " << kiln::kVersion << "\n";
    return kOk;
  }
  std::string command = argv[1];
  for (int i = 2; i < argc; ++i)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::string help = command_help(command);
      if (help.empty()) break;  // an unknown command: reported below
      std::cout << help;
      return kOk;
    }
  try {
    if (command == "inspect") return cmd_inspect(parse_args(argc, argv, 2, {}, {"--dump"}));
    if (command == "build") return cmd_build(parse_args(argc, argv, 2, {"--output", "--precision", "--profile"}, {}));
    if (command == "run")
      return cmd_run(parse_args(argc, argv, 2,
                                {"--device", "--shapes", "--input", "--output-dir", "--seed", "--warmup", "--iterations", "--precision",
                                 "--runtime-cache", "--kernel-specialization", "--cuda-graphs"},
                                {"--compare-reference", "--verbose", "--shared-runtime-cache"}));
    if (command == "bench")
      return cmd_bench(parse_args(argc, argv, 2,
                                  {"--trace", "--repeat", "--iterations", "--kernel-specialization", "--cuda-graphs", "--runtime-cache",
                                   "--settle-ms", "--json", "--static-plan"},
                                  {"--manual-capture", "--shared-runtime-cache"}));
    if (command == "cache")
      return cmd_cache(parse_args(argc, argv, 2, {"--arch", "--cache", "--shapes"}, {"--shared-runtime-cache"}));
    if (command == "conformance")
      return cmd_conformance(parse_args(argc, argv, 2, {"--device", "--filter"}, {"--verbose", "--specialized"}));
    std::cerr << "kiln: unknown command '" << command << "' (see kiln --help)\n";
    return kUsage;
  } catch (const kiln::Error& e) {
    std::cerr << "kiln " << command << ": " << kiln::error_code_name(e.code()) << ": " << e.what() << "\n";
    return exit_code_for(e);
  } catch (const std::exception& e) {
    std::cerr << "kiln " << command << ": internal error: " << e.what() << "\n";
    return kRunFailed;
  }
}
