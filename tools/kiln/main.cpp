// kiln: command-line entry point. Every command and flag is defined here,
// once, with CLI11: the help text, the allowed values and the defaults a user
// sees come from the same definitions the parser uses.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "kiln/version.h"

namespace kiln::cli {

namespace {

// The usage line first (scripts look for "usage: kiln COMMAND"), then what
// the command does, its arguments and options.
class HelpFormatter : public CLI::Formatter {
 public:
  HelpFormatter() {
    label("Usage", "usage");
    label("OPTIONS", "options");
    label("SUBCOMMAND", "COMMAND");
    label("SUBCOMMANDS", "COMMAND");
    label("REQUIRED", "(required)");
    label("Positionals", "arguments");
    label("Excludes", "excludes");
    column_width(36);
  }
  // A command's description starts with a one-line summary: the listing shows only that.
  std::string make_subcommand(const CLI::App* sub) const override {
    std::ostringstream out;
    const std::string& description = sub->get_description();
    CLI::detail::format_help(out, sub->get_name(), description.substr(0, description.find('\n')), column_width_);
    return out.str();
  }
  std::string make_help(const CLI::App* app, std::string name, CLI::AppFormatMode mode) const override {
    if (mode == CLI::AppFormatMode::Sub) return make_expanded(app);
    std::string out = make_usage(app, name) + "\n" + make_description(app) + make_positionals(app) +
                      make_groups(app, mode) + make_subcommands(app, mode);
    std::string footer = make_footer(app);
    return footer.empty() ? out : out + "\n" + footer;
  }
};

constexpr const char* kExitCodes = R"(exit codes:
  0 success   1 conformance failures   2 bad command line
  3 file missing or undecodable   4 model invalid or unsupported
  5 run failed (bad inputs, no usable GPU, CUDA error)
  6 run --compare-reference, debug --compare-layers: tensors beyond --rtol/--atol
)";

std::string join(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

// Restricts `opt` to `values`; the help shows them as the option's type.
CLI::Option* one_of(CLI::Option* opt, const std::vector<std::string>& values) {
  opt->type_name(join(values, "|"));
  opt->check(CLI::Validator(
      [values](std::string& value) -> std::string {
        if (std::find(values.begin(), values.end(), value) != values.end()) return "";
        return "'" + value + "' is not one of " + join(values, ", ");
      },
      ""));
  return opt;
}

// Digits only, at most `max_digits` of them: a count or seed that converts
// without wrapping (CLI11 would turn -1 into 2^64-1 for an unsigned seed).
CLI::Validator digits(size_t max_digits) {
  return CLI::Validator(
      [max_digits](std::string& value) -> std::string {
        if (!value.empty() && value.size() <= max_digits && value.find_first_not_of("0123456789") == std::string::npos)
          return "";
        return "'" + value + "' is not a non-negative integer of at most " + std::to_string(max_digits) + " digits";
      },
      "");
}

// --device cuda | cuda:N | N (trtexec's --device=N), and cpu where `cpu`;
// N becomes cuda:N.
CLI::Option* device_option(CLI::App* app, std::string& device, bool cpu, const std::string& help) {
  auto check = [cpu](std::string& value) -> std::string {
    std::string index = value.rfind("cuda:", 0) == 0 ? value.substr(5) : value;
    if ((cpu && value == "cpu") || value == "cuda") return "";
    if (!index.empty() && index.size() <= 3 && index.find_first_not_of("0123456789") == std::string::npos) {
      value = "cuda:" + std::to_string(std::stoi(index));
      return "";
    }
    return "'" + value + "' is not " + (cpu ? "cpu, " : "") + "cuda, cuda:N or N (a CUDA device index)";
  };
  return app->add_option("--device", device, help)
      ->type_name(cpu ? "cpu|cuda[:N]" : "cuda[:N]")
      ->transform(CLI::Validator(check, ""))  // a transform may rewrite the value; a check may not
      ->capture_default_str();
}

// A time span (--duration in seconds, --warmUp in milliseconds): a number from 0 to `max`.
CLI::Option* span(CLI::App* app, const std::string& name, double& value, double max, const char* unit, const std::string& help) {
  auto check = [max](std::string& text) -> std::string {
    char* end = nullptr;
    double v = std::strtod(text.c_str(), &end);
    if (!text.empty() && *end == '\0' && v >= 0 && v <= max) return "";
    return "'" + text + "' is not a number from 0 to " + std::to_string(int64_t(max));
  };
  return app->add_option(name, value, help)->type_name(unit)->check(CLI::Validator(check, ""));
}

CLI::Option* count(CLI::App* app, const std::string& name, int& value, const std::string& help) {
  return app->add_option(name, value, help)->type_name("N")->check(digits(9))->capture_default_str();
}

// A flag that may be given many times, one value each time (CLI11 would
// otherwise let it swallow the positional arguments after it).
CLI::Option* repeated(CLI::App* app, const std::string& name, std::vector<std::string>& values, const std::string& help) {
  return app->add_option(name, values, help)->allow_extra_args(false);
}

// --profile-index N: the optimization profile of the plan the contexts select.
CLI::Option* profile_index(CLI::App* app, int& index) {
  return count(app, "--profile-index", index,
               "the plan's optimization profile to run: input shapes must lie in\n"
               "its ranges (kiln inspect lists them)");
}

constexpr const char* kTrtexec = "trtexec spellings";

// --runtime-cache and friends, shared by run and bench.
void add_runtime_flags(CLI::App* app, RuntimeFlags& flags) {
  app->add_option("--runtime-cache", flags.runtime_cache,
                  "runtime cache file, or `off`\n(default $XDG_CACHE_HOME/kiln/runtime_cache.bin)")
      ->type_name("FILE|off");
  app->add_flag("--shared-runtime-cache", flags.shared_runtime_cache,
                "trust a cache file others own or can write (see docs/security.md)");
  one_of(app->add_option("--kernel-specialization", flags.kernel_specialization,
                         "lazy: generic kernels at a new shape, specialized ones swapped in\n"
                         "as they compile; eager: compile them before the first call;\n"
                         "none: generic kernels only"),
         {"lazy", "eager", "none"})
      ->capture_default_str();
  CLI::Option* graphs = one_of(app->add_option("--cuda-graphs", flags.cuda_graphs,
                                               "capture a CUDA graph per input shape and replay it, or launch\n"
                                               "every kernel each call"),
                               {"whole_graph_capture", "disabled"})
                            ->capture_default_str();
  app->add_flag_callback("--useCudaGraph", [&flags] { flags.cuda_graphs = "whole_graph_capture"; },
                         "trtexec spelling: --cuda-graphs whole_graph_capture (the default)")
      ->group(kTrtexec)
      ->excludes(graphs);
}

// trtexec's names for the model file: --onnx (an ONNX model) and --loadEngine (a plan).
void add_model_aliases(CLI::App* app, ModelArg& model, bool onnx, bool engine) {
  if (onnx) app->add_option("--onnx", model.onnx, "trtexec spelling: the ONNX model")->type_name("FILE")->group(kTrtexec);
  if (engine) app->add_option("--loadEngine", model.engine, "trtexec spelling: the plan")->type_name("PLAN.kiln")->group(kTrtexec);
}

// --precision and trtexec's --fp16 / --bf16, which exclude each other.
void add_precision(CLI::App* app, std::string& precision, const std::string& help) {
  CLI::Option* named = one_of(app->add_option("--precision", precision, help), {"fp32", "fp16", "bf16"})->capture_default_str();
  CLI::Option* fp16 = app->add_flag_callback("--fp16", [&precision] { precision = "fp16"; }, "trtexec spelling: --precision fp16");
  CLI::Option* bf16 = app->add_flag_callback("--bf16", [&precision] { precision = "bf16"; }, "trtexec spelling: --precision bf16");
  fp16->group(kTrtexec)->excludes(named)->excludes(bf16);
  bf16->group(kTrtexec)->excludes(named);
}

// The model and its inputs, as run and profile take them.
void add_run_inputs(CLI::App* app, RunOptions& options) {
  app->add_option("MODEL", options.model.positional, "ONNX model or kiln plan")->type_name("");
  add_model_aliases(app, options.model, true, true);
  repeated(app, "--shapes", options.shapes,
           "input shapes, e.g. x:1x3x224x224,mask:1x16 (the name is everything\n"
           "before the last ':' of an item)")
      ->type_name("NAME:DIMS[,...]");
  repeated(app, "--input", options.inputs,
           "an input from a .npy file; NAME is the longest prefix before a ':'\n"
           "that names an input of the model")
      ->type_name("NAME:FILE.npy");
  app->add_option("--seed", options.seed, "seed of the random inputs")->type_name("N")->check(digits(19))->capture_default_str();
  add_precision(app, options.precision, "precision of the plan an ONNX model is built into (cuda)");
}

// Case-insensitive edit distance, for "did you mean".
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) == std::tolower(static_cast<unsigned char>(b[j - 1]));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// " (did you mean X?)" for the closest candidate, if one is close enough.
std::string suggestion(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, word.size() / 3) + 1;
  for (const auto& c : candidates)
    if (size_t d = edit_distance(word, c); d < best_distance) {
      best = c;
      best_distance = d;
    }
  return best.empty() ? "" : " (did you mean " + best + "?)";
}

std::vector<std::string> flags_of(const CLI::App* app) {
  std::vector<std::string> flags;
  for (const CLI::Option* opt : app->get_options()) {
    for (const auto& n : opt->get_lnames()) flags.push_back("--" + n);
    for (const auto& n : opt->get_snames()) flags.push_back("-" + n);
  }
  return flags;
}

std::vector<std::string> commands_of(const CLI::App* app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app->get_subcommands({})) names.push_back(sub->get_name());
  return names;
}

// The command line as a user typed it: "kiln cache warm".
std::string command_name(const CLI::App* app) {
  std::string name = app->get_name();
  for (const CLI::App* sub = app; !sub->get_subcommands().empty();) {
    sub = sub->get_subcommands().front();
    name += " " + sub->get_name();
  }
  return name;
}

// Arguments the parser did not place (kept so that they can be reported with
// a suggestion): the first one is an error.
void reject_leftovers(const CLI::App* app) {
  std::vector<std::string> flags;
  for (const CLI::App* level = app; level;) {
    auto flags_here = flags_of(level);
    flags.insert(flags.end(), flags_here.begin(), flags_here.end());
    auto selected = level->get_subcommands();
    std::vector<std::string> rest = level->remaining();
    if (!rest.empty()) {
      std::string word = rest.front();
      std::string help = " (see " + command_name(app) + " --help)";
      if (word.size() > 1 && word[0] == '-') {
        std::string flag = word.substr(0, word.find('='));
        fail(ErrorCode::kInvalidArgument, "unknown option ", flag, suggestion(flag, flags), help);
      }
      if (selected.empty() && !level->get_subcommands({}).empty())
        fail(ErrorCode::kInvalidArgument, "unknown command '", word, "'", suggestion(word, commands_of(level)), help);
      fail(ErrorCode::kInvalidArgument, "unexpected argument '", word, "'", help);
    }
    level = selected.empty() ? nullptr : selected.front();
  }
}

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

}  // namespace kiln::cli

int main(int argc, char** argv) {
  using namespace kiln::cli;
  CLI::App app{"kiln - a JIT inference runtime for NVIDIA GPUs", "kiln"};
  app.formatter(std::make_shared<HelpFormatter>());
  app.footer(kExitCodes);
  app.allow_extras();  // reported by reject_leftovers, with a suggestion; the commands inherit it
  app.option_defaults()->group("options");
  app.set_help_flag("-h,--help", "print this help (also: kiln COMMAND --help, kiln help COMMAND)");
  app.set_version_flag("--version", std::string("kiln ") + kiln::kVersion, "print the version");

  // How much of kiln's log (progress, notes, warnings) reaches stderr; every command has both.
  bool verbose = false, quiet = false;
  auto add_log_flags = [&](CLI::App* command, const std::string& verbose_help) {
    CLI::Option* more = command->add_flag("--verbose", verbose, verbose_help);
    command->add_flag("--quiet", quiet, "print only warnings and errors on stderr")->excludes(more);
  };
  const std::string kVerboseLog = "print kiln's verbose log too (runtime cache loads and saves)";

  InspectOptions inspect_options;
  CLI::App* inspect = app.add_subcommand("inspect");
  inspect->description(
      "What a model or plan declares and what kiln makes of it.\n\n"
      "For a model: inputs and outputs with dtypes and symbolic shapes, op histogram,\n"
      "unsupported ops, parameter count and bytes. For a plan: precision, ranges,\n"
      "kernels, fused groups, arena and weight bytes. For both: which nodes the GPU\n"
      "runtime cannot run, and why (decided without a GPU; a model as `kiln build`\n"
      "would lower it at fp32).");
  inspect->add_option("MODEL", inspect_options.model.positional, "ONNX model or kiln plan")->type_name("");
  add_model_aliases(inspect, inspect_options.model, true, true);
  inspect->add_flag("--dump", inspect_options.dump, "print the whole (lowered) network with inferred shapes");

  BuildOptions build_options;
  CLI::App* build = app.add_subcommand("build");
  build->description(
      "Builds a model into a plan ahead of time (no GPU needed).\n\n"
      "Passes: constant folding, fusion (matmul epilogues, elementwise chains,\n"
      "attention), channels-last convolutions in fp16/bf16, precision, memory\n"
      "planning. Every symbolic input dim needs a range, from --profile (one per\n"
      "input) or from the model. A plan may hold several optimization profiles:\n"
      "--profile entries naming different inputs form one profile, and naming an\n"
      "input again starts the next, e.g. for inputs x and mask:\n"
      "  --profile x:1x64/4x64/8x64 --profile mask:1x16/4x16/8x16\n"
      "  --profile x:9x64/32x64/64x64 --profile mask:9x16/32x16/64x16\n"
      "The plan's memory holds the largest shapes of every profile; a context runs\n"
      "the shapes of the profile it selects (kiln run/bench --profile-index).\n"
      "Ends with a warning naming the nodes the GPU runtime cannot run, if any\n"
      "(the plan is written: the CPU device runs it).");
  build->add_option("MODEL", build_options.model.positional, "ONNX model")->type_name("");
  add_model_aliases(build, build_options.model, true, false);
  build->add_option("-o,--output,--saveEngine", build_options.output, "plan file to write (trtexec: --saveEngine)")
      ->type_name("PLAN.kiln")
      ->required();
  add_precision(build, build_options.precision, "precision of the plan's kernels");
  repeated(build, "--profile", build_options.profiles,
           "min/opt/max shapes of one input, e.g. x:1x64/8x64/32x64 (repeat per\n"
           "input; naming an input again starts the next profile; the name is\n"
           "everything before the last ':')")
      ->type_name("NAME:MIN/OPT/MAX");
  repeated(build, "--data-dependent-bound", build_options.data_dependent_bounds,
           "the largest size tensor NAME may take where its size depends on data\n"
           "(a Range of input bounds, OneHot's depth, a shape computed at run\n"
           "time): the plan's memory holds it, and a run that exceeds it fails;\n"
           "NonZero, TopK, Compress, Unique, NonMaxSuppression and Reshape get\n"
           "one from the input shapes unless given")
      ->type_name("NAME=N");
  for (auto [flag, specs, bound] : {std::tuple{"--minShapes", &build_options.min_shapes, "smallest"},
                                    {"--optShapes", &build_options.opt_shapes, "tuned-for"},
                                    {"--maxShapes", &build_options.max_shapes, "largest"}})
    repeated(build, flag, *specs,
             std::string("trtexec spelling: the ") + bound + " shapes of a profile, e.g.\n"
             "x:1x64,mask:1x16 (an input only in --optShapes gets one fixed shape);\n"
             "given again, it is for the next profile")
        ->type_name("NAME:DIMS[,...]")
        ->group(kTrtexec);

  RunOptions run_options;
  CLI::App* run = app.add_subcommand("run");
  run->description(
      "Runs a model or plan on the CPU reference or the GPU.\n\n"
      "Runs the model once and prints each output's shape and statistics. Inputs not\n"
      "given with --input are random (seeded, non-zero); symbolic dims come from\n"
      "--shapes, else from the profile's opt value, else 1. --device cuda runs a plan\n"
      "on the GPU (an ONNX model is built first, in --precision, for exactly the\n"
      "given shapes) and reports latency over --iterations runs after --warmup runs.");
  run_options.runtime.device = "cpu";
  add_run_inputs(run, run_options);
  device_option(run, run_options.runtime.device, true,
                "cpu: the reference interpreter; cuda: the GPU (cuda:N or N: device N)");
  profile_index(run, run_options.profile_index);
  run->add_option("--output-dir", run_options.output_dir, "write each output as DIR/NAME.npy")->type_name("DIR");
  count(run, "--warmup", run_options.warmup, "untimed runs first (cuda)");
  count(run, "--iterations", run_options.iterations, "timed runs, at least (cuda)");
  span(run, "--duration", run_options.duration_s, 86400, "SECONDS", "time the runs for at least this long, too (cuda)");
  span(run, "--warmUp", run_options.warmup_ms, 86400e3, "MS", "trtexec spelling: warm up for at least MS milliseconds, too (cuda)")
      ->group(kTrtexec);
  run->add_flag("--compare-reference", run_options.compare_reference,
                "compare each output with the reference interpreter's (float64\n"
                "accumulation); exit code 6 when an element is beyond --atol + --rtol * |reference|");
  span(run, "--rtol", run_options.rtol, 1e6, "R",
       "relative tolerance of --compare-reference (default: 1e-4 for fp32 plans,\n"
       "1e-2 for fp16, 5e-2 for bf16; the CPU device: 1e-9)");
  span(run, "--atol", run_options.atol, 1e6, "A",
       "absolute tolerance of --compare-reference (default: 1e-5 for fp32 plans,\n"
       "1e-3 for fp16, 1e-2 for bf16; the CPU device: 1e-12)");
  run->add_option("--save-inputs", run_options.save_inputs_dir,
                  "write every input (given or random) as DIR/NAME.npy, to run again with --input")
      ->type_name("DIR");
  run->add_flag("--dumpProfile", run_options.profile_kernels, "trtexec spelling: also time every launch, as kiln profile does (cuda)")
      ->group(kTrtexec);
  add_runtime_flags(run, run_options.runtime);
  add_log_flags(run,
                "print the CUDA graph counters, per shape how many launches run generic,\n"
                "specialized or pending kernels, and kiln's verbose log");

  RunOptions profile_options;
  profile_options.profile_kernels = true;
  profile_options.runtime.device = "cuda";
  profile_options.iterations = 20;
  CLI::App* profile = app.add_subcommand("profile");
  profile->description(
      "Times every launch of a model or plan on the GPU.\n\n"
      "Runs the model as kiln run --device cuda does (random or given inputs; an\n"
      "ONNX model is built first, in --precision), then runs its launches directly\n"
      "and back to back --profile-iterations times and prints, per launch, the\n"
      "node, its op, what runs it (a generated kernel, specialized or not;\n"
      "cuBLASLt; cuDNN), the median GPU time, its share of the total, and the\n"
      "bandwidth and product rate it reached (bytes: the node's inputs and outputs;\n"
      "products: matmuls, convolutions and attention).");
  add_run_inputs(profile, profile_options);
  device_option(profile, profile_options.runtime.device, false, "the GPU (cuda, cuda:N or N: device N)");
  profile_index(profile, profile_options.profile_index);
  count(profile, "--profile-iterations", profile_options.profile_iterations, "timed passes over the launches (median per launch)")
      ->check(CLI::Range(1, 1000000000), "at least 1");
  count(profile, "--warmup", profile_options.warmup, "untimed runs first");
  add_runtime_flags(profile, profile_options.runtime);
  add_log_flags(profile, kVerboseLog);

  DebugOptions debug_options;
  debug_options.run.runtime.device = "cuda";
  CLI::App* debug = app.add_subcommand("debug");
  debug->description(
      "Finds the first layer where a plan's values leave the reference's.\n\n"
      "--compare-layers runs the plan on the GPU one node at a time (an ONNX model is\n"
      "built first, in --precision, for exactly the given shapes) and the reference\n"
      "interpreter (float64 accumulation) on the same inputs, compares every tensor\n"
      "the plan materializes (each fused group's output too) as float64, and prints\n"
      "per tensor in plan order the node, op (a fused node's sources), dtype, shape,\n"
      "max abs and rel error, relative L2 and pass/fail, then the first failing node\n"
      "with its inputs' value ranges. The reference runs the model (plan tensors\n"
      "matched by name; those the builder made or laid out otherwise are listed as\n"
      "not comparable, with the reason), or the plan's own network (--reference\n"
      "plan; the default for a plan without --model). --reference onnxruntime takes\n"
      "onnxruntime's CPU provider running the model as the oracle instead, so a fault\n"
      "of kiln's own reference shows too. --device cpu runs the plan's\n"
      "network on the reference interpreter instead of the GPU: it checks the\n"
      "builder's rewrites and precision against the model, no GPU needed.\n"
      "An element passes when |got - reference| <= --atol + --rtol * max(|reference|,\n"
      "the reference tensor's RMS): near zero, a low precision's rounding follows the\n"
      "tensor's scale. Exit code 6 when an element of any tensor does not.");
  add_run_inputs(debug, debug_options.run);
  debug->add_flag("--compare-layers", debug_options.compare_layers, "compare every tensor of the plan with the reference (required)");
  device_option(debug, debug_options.run.runtime.device, true,
                "cuda: the plan on the GPU (cuda:N or N: device N); cpu: the plan's\n"
                "network on the reference interpreter");
  profile_index(debug, debug_options.run.profile_index);
  one_of(debug->add_option("--reference", debug_options.reference,
                           "what the plan is compared with: the reference interpreter running\n"
                           "the model or the plan's own network, or onnxruntime's CPU provider\n"
                           "running the model (an independent oracle; needs a Python with the\n"
                           "onnx and onnxruntime packages: python3, or $KILN_PYTHON)\n"
                           "(default: model when there is one, else plan)"),
         {"model", "plan", "onnxruntime"});
  debug->add_option("--model", debug_options.model_file, "the ONNX model a PLAN was built from, for --reference model\nor onnxruntime")
      ->type_name("FILE.onnx");
  debug->add_option("--load-inputs", debug_options.load_inputs_dir,
                    "inputs from DIR/NAME.npy, as kiln run --save-inputs writes them\n"
                    "(--input first; inputs without a file are random)")
      ->type_name("DIR");
  span(debug, "--rtol", debug_options.run.rtol, 1e6, "R",
       "relative tolerance (default: 1e-4 for fp32 plans, 1e-2 for fp16,\n5e-2 for bf16)");
  span(debug, "--atol", debug_options.run.atol, 1e6, "A",
       "absolute tolerance (default: 1e-5 for fp32 plans, 1e-3 for fp16,\n1e-2 for bf16)");

  BenchOptions bench_options;
  CLI::App* bench = app.add_subcommand("bench");
  bench->description(
      "Latency of a plan over a trace of input shapes (GPU).\n\n"
      "One --trace per call, in order, the whole trace --repeat times; each call timed from binding its inputs to the end of a\n"
      "stream synchronize; then per shape the first, second and steady-state call\n"
      "(median of --iterations, taken once no kernel waits for its specialized\n"
      "variant, waiting at most --settle-ms). Inputs are random. --streams N adds\n"
      "per shape the total qps of N contexts called at once from N threads.");
  bench->add_option("PLAN", bench_options.plan.positional, "kiln plan")->type_name("");
  add_model_aliases(bench, bench_options.plan, false, true);
  repeated(bench, "--trace", bench_options.traces, "the input shapes of one call, e.g. x:1x7x512 (repeat, in order)")
      ->type_name("NAME:DIMS[,...]");
  profile_index(bench, bench_options.profile_index);
  count(bench, "--repeat", bench_options.repeat, "times the whole trace runs");
  count(bench, "--iterations", bench_options.iterations, "steady-state calls per shape, at least");
  span(bench, "--duration", bench_options.duration_s, 86400, "SECONDS", "time each shape's steady state for at least this long, too");
  device_option(bench, bench_options.runtime.device, false, "the GPU (cuda:N or N: device N)");
  count(bench, "--settle-ms", bench_options.settle_ms, "longest wait for specialized kernels per shape");
  repeated(bench, "--static-plan", bench_options.static_plans,
           "a plan built for one shape of the trace: timed on its own engine, in\n"
           "rounds alternating with the trace's engine at that shape")
      ->type_name("PLAN.kiln");
  count(bench, "--streams", bench_options.streams,
        "then per shape, the throughput of N streams, each with its own\n"
        "context and host thread on the one engine (0: none; at most 256)")
      ->check(CLI::Range(0, 256).description(""));
  bench->add_flag("--manual-capture", bench_options.manual_capture,
                  "also time the steady state's kernels captured by hand into a graph\n"
                  "(native graphs off) and replayed");
  bench->add_option("--json-file", bench_options.json_file, "also write the --json document to FILE")->type_name("FILE");
  add_runtime_flags(bench, bench_options.runtime);

  CacheOptions cache_options;
  CLI::App* cache = app.add_subcommand("cache");
  cache->description(
      "The runtime cache: info, clear, warm.\n\n"
      "Compiled kernels keyed by source, options, arch and NVRTC version, and cuDNN's algorithm choices (made on a GPU). It holds code that runs\n"
      "on the GPU, so a cache file or folder owned by another user or writable by group\n"
      "or others is not used, and clear and warm fail on it, unless\n"
      "--shared-runtime-cache says it is shared on purpose.");
  cache->add_flag("--shared-runtime-cache", cache_options.shared_runtime_cache,
                  "trust a cache file others own or can write (see docs/security.md)");
  CLI::App* cache_info = cache->add_subcommand("info", "print entries, bytes, per-arch counts and whether the file is trusted (reads only)");
  cache_info->add_option("FILE", cache_options.file, "runtime cache file")->type_name("")->required();
  CLI::App* cache_clear = cache->add_subcommand("clear", "empty the file (refuses a file that is not a runtime cache)");
  cache_clear->add_option("FILE", cache_options.file, "runtime cache file")->type_name("")->required();
  CLI::App* cache_warm = cache->add_subcommand("warm", "compile a plan's kernels for an arch into the file, no GPU needed");
  cache_warm->add_option("PLAN", cache_options.file, "kiln plan")->type_name("")->required();
  cache_warm->add_option("--arch", cache_options.arch, "GPU architecture, e.g. sm_90")->type_name("sm_NN")->required();
  cache_warm->add_option("--cache", cache_options.cache, "runtime cache file to fill")->type_name("FILE")->required();
  repeated(cache_warm, "--shapes", cache_options.shapes, "also the kernels specialized for these input shapes (repeat per set)")
      ->type_name("NAME:DIMS[,...]");
  for (CLI::App* verb : {cache_info, cache_clear, cache_warm}) verb->fallthrough();  // --shared-runtime-cache after the verb

  ConformanceOptions conformance_options;
  CLI::App* conformance = app.add_subcommand("conformance");
  conformance->description(
      "Runs ONNX backend node tests.\n\n"
      "DIR holds one folder per test (model.onnx and test_data_set_*); prints one line per test (--verbose) or per failure, a per-op\n"
      "table, and last `N passed, N failed, N skipped`. On Debian:\n"
      "/usr/share/libonnx-testdata/data/node.");
  conformance->add_option("DIR", conformance_options.dir, "folder of node tests")->type_name("")->required();
  one_of(conformance->add_option("--device", conformance_options.device,
                                 "cpu: the reference interpreter; plan: through the builder into an\n"
                                 "fp32 plan run on the reference; cuda: that plan on the GPU"),
         {"cpu", "plan", "cuda"})
      ->capture_default_str();
  conformance->add_option("--filter", conformance_options.filter, "only tests whose name contains TEXT")->type_name("TEXT");
  add_log_flags(conformance, "print one line per test, and kiln's verbose log");
  conformance->add_flag("--specialized", conformance_options.specialized,
                        "cuda: kernels specialized for each test's shapes instead of the generic ones");

  OpsOptions ops_options;
  CLI::App* ops = app.add_subcommand("ops");
  ops->description(
      "Every op kind kiln knows and where it runs.\n\n"
      "Per op: the ONNX ops imported as it, whether the CPU reference interpreter\n"
      "runs it, and whether the GPU runtime does (with its conditions), or leaves it\n"
      "to `kiln build` to lower, or cannot (with the reason). docs/ops.md is the\n"
      "--markdown output.");
  ops->add_flag("--markdown", ops_options.markdown, "print the table of docs/ops.md");
  for (CLI::App* command : {inspect, build, bench, cache, ops, debug}) add_log_flags(command, kVerboseLog);

  bool json = false;
  for (CLI::App* command : {inspect, build, run, profile, debug, bench, cache_info, conformance, ops})
    command->add_flag("--json", json, "print one JSON document on stdout (see docs/cli.md); text goes to stderr");
  for (CLI::App* command : {inspect, build, run, profile, debug, bench, cache, conformance, ops, cache_info, cache_clear, cache_warm}) {
    command->group("commands");
    command->get_help_ptr()->group("options");  // made before the option defaults were copied
  }

  if (argc < 2) {
    std::cerr << app.help();
    return kUsage;
  }
  // CLI11 takes the arguments last first.
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.front() == "help") {  // kiln help [COMMAND]
    args.erase(args.begin());
    args.push_back("--help");
  }
  std::reverse(args.begin(), args.end());
  try {
    try {
      app.parse(args);
    } catch (const CLI::CallForHelp&) {
      reject_leftovers(&app);  // `kiln nope --help` is still an unknown command
      std::cout << app.help();
      return kOk;
    } catch (const CLI::CallForVersion& e) {
      std::cout << e.what() << "\n";
      return kOk;
    } catch (const CLI::ParseError& e) {
      kiln::fail(kiln::ErrorCode::kInvalidArgument, e.what(), " (see ", command_name(&app), " --help)");
    }
    reject_leftovers(&app);
    run_options.verbose = profile_options.verbose = conformance_options.verbose = verbose;
    log_to_stderr(command_name(&app), quiet     ? kiln::Severity::kWarning
                                      : verbose ? kiln::Severity::kVerbose
                                                : kiln::Severity::kInfo);
  } catch (const kiln::Error& e) {
    std::cerr << command_name(&app) << ": " << kiln::error_code_name(e.code()) << ": " << e.what() << "\n";
    return exit_code_for(e);
  }
  auto run_command = [&](Json& doc) -> int {
    try {
      if (inspect->parsed()) return cmd_inspect(inspect_options, doc);
      if (build->parsed()) return cmd_build(build_options, doc);
      if (run->parsed()) return cmd_run(run_options, doc);
      if (profile->parsed()) return cmd_run(profile_options, doc);
      if (debug->parsed()) return cmd_debug(debug_options, doc);
      if (bench->parsed()) return cmd_bench(bench_options, doc);
      if (conformance->parsed()) return cmd_conformance(conformance_options, doc);
      if (ops->parsed()) return cmd_ops(ops_options, doc);
      if (cache->parsed()) {
        if (cache->get_subcommands().empty())
          kiln::fail(kiln::ErrorCode::kInvalidArgument, "kiln cache needs one of info, clear, warm (see kiln cache --help)");
        cache_options.verb = cache->get_subcommands().front()->get_name();
        return cmd_cache(cache_options, doc);
      }
      kiln::fail(kiln::ErrorCode::kInvalidArgument, "no command given (see kiln --help)");
    } catch (const kiln::Error& e) {
      std::cerr << command_name(&app) << ": " << kiln::error_code_name(e.code()) << ": " << e.what() << "\n";
      doc["error"] = {{"kind", kiln::error_code_name(e.code())}, {"message", e.what()}};
      return exit_code_for(e);
    } catch (const std::exception& e) {
      std::cerr << command_name(&app) << ": internal error: " << e.what() << "\n";
      doc["error"] = {{"kind", "internal error"}, {"message", e.what()}};
      return kRunFailed;
    }
  };
  // With --json, stdout carries only the document: the commands' text goes to stderr.
  std::streambuf* stdout_buffer = std::cout.rdbuf();
  if (json) std::cout.rdbuf(std::cerr.rdbuf());
  std::string name = command_name(&app);  // "kiln cache info"
  Json doc = {{"command", name.substr(std::min<size_t>(5, name.size()))}};
  int code = run_command(doc);
  if (json) {
    std::cout.rdbuf(stdout_buffer);
    doc["exit_code"] = code;
    if (auto notes = make_finite(doc); !notes.empty()) doc["notes"] = notes;
    std::cout << doc.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";  // names need not be UTF-8
  }
  return code;
}
