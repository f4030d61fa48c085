// kiln build: ONNX model -> .kiln plan, on any machine (no GPU needed).
#include <optional>
#include <set>

#include "cli.h"
#include "kiln/builder.h"
#include "kiln/logging.h"
#include "kiln/onnx.h"

namespace kiln::cli {

namespace {

// A shell word: quoted when it holds anything but plain characters.
std::string shell_word(const std::string& text) {
  if (text.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:/,=+-") == std::string::npos)
    return text;
  std::string out = "'";
  for (char ch : text) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

// Before any pass runs: every symbolic input dim needs a range. The error
// names the model's inputs and offers --profile flags to paste (ranges the
// model or the command line gave are kept; others are 1/1/64 to be edited).
void require_ranges(const ir::Network& net, const builder::BuildOptions& options) {
  auto range_of = [&](const std::string& symbol) -> std::optional<ir::DimRange> {
    if (auto it = options.ranges.find(symbol); it != options.ranges.end()) return it->second;
    if (auto it = net.dim_ranges().find(symbol); it != net.dim_ranges().end()) return it->second;
    return std::nullopt;
  };
  std::string missing, flags;
  for (ir::ValueId id : net.inputs()) {
    const ir::Value& v = net.value(id);
    bool lacks = false, pasteable = true;
    std::string bounds[3];
    for (size_t i = 0; i < v.shape.size(); ++i) {
      const ir::Dim& d = v.shape[i];
      std::set<std::string> symbols;
      d.collect_symbols(symbols);
      std::optional<ir::DimRange> range;
      if (d.is_constant()) range = ir::DimRange{d.constant(), d.constant(), d.constant()};
      else if (symbols.size() == 1 && d == ir::Dim::symbol(*symbols.begin())) range = range_of(*symbols.begin());
      else pasteable = false;  // an expression: add_input_profile cannot take it
      for (const std::string& symbol : symbols)
        if (!range_of(symbol)) {
          lacks = true;
          missing += str(missing.empty() ? "" : ", ", "input '", v.name, "' dim ", i, " ('", symbol, "')");
        }
      ir::DimRange r = range.value_or(ir::DimRange{1, 1, 64});
      for (int b = 0; b < 3; ++b) bounds[b] += (i ? "x" : "") + std::to_string(b == 0 ? r.min : b == 1 ? r.opt : r.max);
    }
    if (lacks && pasteable) flags += " --profile " + shell_word(v.name + ":" + bounds[0] + "/" + bounds[1] + "/" + bounds[2]);
  }
  if (missing.empty()) return;
  fail(ErrorCode::kUnsupported, missing, " ha", missing.find(", input") == std::string::npos ? "s" : "ve",
       " no range; give every symbolic input dim a range (min/opt/max), e.g. add", flags.empty() ? " --profile NAME:MIN/OPT/MAX" : flags,
       flags.empty() ? "" : " (1/1/64 where kiln had no range: put the sizes you will run)");
}

}  // namespace

int cmd_build(const BuildOptions& cli, Json& doc) {
  const char* usage = "usage: kiln build MODEL.onnx -o OUT.kiln [--precision fp32|fp16|bf16] [--profile NAME:MINxD/OPTxD/MAXxD ...]";
  std::string model = model_path(cli.model, usage);
  builder::BuildOptions options;
  options.precision = *plan::parse_precision(cli.precision);  // the parser accepted only these names
  kiln::log(Severity::kInfo, "loading " + model);
  ir::Network net = onnx::load_model(model);
  for (const std::string& spec : cli.profiles) {
    // The shapes hold no ':', so the name is everything before the last one.
    size_t colon = spec.rfind(':');
    std::string name = colon == std::string::npos ? "" : spec.substr(0, colon);
    std::string rest = colon == std::string::npos ? "" : spec.substr(colon + 1);
    size_t s1 = rest.find('/'), s2 = s1 == std::string::npos ? s1 : rest.find('/', s1 + 1);
    if (name.empty() || s2 == std::string::npos || rest.find('/', s2 + 1) != std::string::npos)
      fail(ErrorCode::kInvalidArgument, "--profile '", spec, "' must look like name:1x128/4x128/8x128 (min/opt/max)");
    std::string what = "--profile '" + spec + "'";
    builder::add_input_profile(net, name, parse_dims(rest.substr(0, s1), what),
                               parse_dims(rest.substr(s1 + 1, s2 - s1 - 1), what), parse_dims(rest.substr(s2 + 1), what),
                               options);
  }
  // --minShapes/--optShapes/--maxShapes: an input given only in --optShapes gets it as min and max too.
  auto min = parse_shapes(cli.min_shapes, "--minShapes"), opt = parse_shapes(cli.opt_shapes, "--optShapes"),
       max = parse_shapes(cli.max_shapes, "--maxShapes");
  std::set<std::string> names;
  for (auto* bound : {&min, &opt, &max})
    for (auto& [name, dims] : *bound) names.insert(name);
  for (const std::string& name : names) {
    for (const std::string& spec : cli.profiles)
      if (spec.rfind(':') == name.size() && spec.compare(0, name.size(), name) == 0)
        fail(ErrorCode::kInvalidArgument, "'", name, "' has both --profile and --min/opt/maxShapes; give one");
    bool only_opt = opt.count(name) && !min.count(name) && !max.count(name);
    for (auto [bound, flag] : {std::pair{&min, "--minShapes"}, {&opt, "--optShapes"}, {&max, "--maxShapes"}})
      if (!bound->count(name) && !only_opt) fail(ErrorCode::kInvalidArgument, "'", name, "' is missing from ", flag);
    builder::add_input_profile(net, name, only_opt ? opt[name] : min[name], opt[name], only_opt ? opt[name] : max[name], options);
  }
  require_ranges(net, options);
  plan::Plan p = builder::build(net, options, model);
  plan::save(p, cli.output);
  kiln::log(Severity::kInfo, str("wrote ", cli.output, " (", p.network.nodes().size(), " kernels, arena ", p.arena_bytes,
                           " bytes, weights ", p.network.parameter_bytes(), " bytes, ", plan::precision_name(p.precision), ")"));
  doc["model"] = model;
  doc["output"] = cli.output;
  doc["precision"] = plan::precision_name(p.precision);
  doc["kernels"] = p.network.nodes().size();
  doc["arena_bytes"] = p.arena_bytes;
  doc["weight_bytes"] = p.network.parameter_bytes();
  doc["ranges"] = Json::object();
  for (auto& [s, r] : p.network.dim_ranges()) doc["ranges"][s] = {{"min", r.min}, {"opt", r.opt}, {"max", r.max}};
  // The plan stays useful without the GPU (the CPU device runs it), so this is
  // a warning; but it is better learnt here than from Engine::create on a GPU machine.
  GpuSupportReport gpu = gpu_support_report(p);
  if (!gpu.unsupported.empty()) {
    std::string message = str("the GPU runtime cannot run ", gpu.nodes - gpu.supported, " of ", gpu.nodes,
                              " nodes, so `kiln run --device cuda` will refuse this plan (the CPU device runs it):");
    for (const std::string& line : gpu_support_lines(gpu)) message += "\n  " + line;
    kiln::log(Severity::kWarning, message);
  }
  doc["gpu_support"] = gpu_support_json(gpu);
  return kOk;
}

}  // namespace kiln::cli
