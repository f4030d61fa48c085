// kiln build: ONNX model -> .kiln plan, on any machine (no GPU needed).
#include <algorithm>
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

// Before any pass runs: every symbolic input dim needs a range in every
// profile. The error names the model's inputs and offers --profile flags to
// paste (ranges the model or the command line gave are kept; others are
// 1/1/64 to be edited).
void require_ranges(const ir::Network& net, const builder::BuildOptions& options) {
  size_t profiles = std::max<size_t>(options.profiles.size(), 1);
  for (size_t k = 0; k < profiles; ++k) {
    auto range_of = [&](const std::string& symbol) -> std::optional<ir::DimRange> {
      if (k < options.profiles.size())
        if (auto it = options.profiles[k].find(symbol); it != options.profiles[k].end()) return it->second;
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
    if (missing.empty()) continue;
    std::string have = missing.find(", input") == std::string::npos ? " has" : " have";
    std::string paste = str(flags.empty() ? " --profile NAME:MIN/OPT/MAX" : flags,
                            flags.empty() ? "" : " (1/1/64 where kiln had no range: put the sizes you will run)");
    if (profiles == 1)
      fail(ErrorCode::kUnsupported, missing, have, " no range; give every symbolic input dim a range (min/opt/max), e.g. add", paste);
    fail(ErrorCode::kUnsupported, missing, have, " no range in profile ", k, "; every profile needs a range (min/opt/max) for every ",
         "symbolic input dim, e.g. add to profile ", k, "'s --profile entries", paste);
  }
}

// One input's min/opt/max shapes, from --profile or --minShapes/--optShapes/--maxShapes.
struct InputShapes {
  std::string input;
  std::vector<int64_t> min, opt, max;
};

// --profile entries in order: those naming different inputs form one
// profile; an entry naming an input the current profile already has starts
// the next one.
std::vector<std::vector<InputShapes>> profile_flags(const std::vector<std::string>& specs) {
  std::vector<std::vector<InputShapes>> profiles;
  for (const std::string& spec : specs) {
    // The shapes hold no ':', so the name is everything before the last one.
    size_t colon = spec.rfind(':');
    std::string name = colon == std::string::npos ? "" : spec.substr(0, colon);
    std::string rest = colon == std::string::npos ? "" : spec.substr(colon + 1);
    size_t s1 = rest.find('/'), s2 = s1 == std::string::npos ? s1 : rest.find('/', s1 + 1);
    if (name.empty() || s2 == std::string::npos || rest.find('/', s2 + 1) != std::string::npos)
      fail(ErrorCode::kInvalidArgument, "--profile '", spec, "' must look like name:1x128/4x128/8x128 (min/opt/max)");
    std::string what = "--profile '" + spec + "'";
    InputShapes shapes{name, parse_dims(rest.substr(0, s1), what), parse_dims(rest.substr(s1 + 1, s2 - s1 - 1), what),
                       parse_dims(rest.substr(s2 + 1), what)};
    bool named = !profiles.empty() && std::any_of(profiles.back().begin(), profiles.back().end(),
                                                  [&](const InputShapes& given) { return given.input == name; });
    if (profiles.empty() || named) profiles.emplace_back();
    profiles.back().push_back(std::move(shapes));
  }
  return profiles;
}

// trtexec's spelling: the k-th --minShapes, --optShapes and --maxShapes make
// profile k. An input only in --optShapes gets that one shape as min and max too.
std::vector<std::vector<InputShapes>> trtexec_profiles(const BuildOptions& cli) {
  struct Flag {
    const char* name;
    const std::vector<std::string>& specs;
  };
  const Flag flags[] = {{"--minShapes", cli.min_shapes}, {"--optShapes", cli.opt_shapes}, {"--maxShapes", cli.max_shapes}};
  size_t sets = 0;
  for (const Flag& flag : flags) sets = std::max(sets, flag.specs.size());
  for (const Flag& a : flags)
    for (const Flag& b : flags)
      if (!a.specs.empty() && !b.specs.empty() && a.specs.size() != b.specs.size())
        fail(ErrorCode::kInvalidArgument, a.name, " is given ", a.specs.size(), " times and ", b.name, " ", b.specs.size(),
             "; each set of --minShapes/--optShapes/--maxShapes makes one profile, so give each of them once per profile");
  std::vector<std::vector<InputShapes>> profiles(sets);
  for (size_t k = 0; k < sets; ++k) {
    std::map<std::string, std::vector<int64_t>> bounds[3];
    std::set<std::string> names;
    for (int b = 0; b < 3; ++b) {
      if (k < flags[b].specs.size()) bounds[b] = parse_shapes({flags[b].specs[k]}, flags[b].name);
      for (auto& [name, dims] : bounds[b]) names.insert(name);
    }
    auto& [min, opt, max] = bounds;
    for (const std::string& name : names) {
      bool only_opt = opt.count(name) && !min.count(name) && !max.count(name);
      for (int b = 0; b < 3; ++b)
        if (!bounds[b].count(name) && !only_opt)
          fail(ErrorCode::kInvalidArgument, "'", name, "' is missing from ", flags[b].name, sets > 1 ? str(" (profile ", k, ")") : "");
      profiles[k].push_back({name, only_opt ? opt[name] : min[name], opt[name], only_opt ? opt[name] : max[name]});
    }
  }
  return profiles;
}

}  // namespace

int cmd_build(const BuildOptions& cli, Json& doc) {
  const char* usage = "usage: kiln build MODEL.onnx -o OUT.kiln [--precision fp32|fp16|bf16] [--profile NAME:MINxD/OPTxD/MAXxD ...] "
                      "[--data-dependent-bound NAME=N ...]";
  std::string model = model_path(cli.model, usage);
  builder::BuildOptions options;
  options.precision = *plan::parse_precision(cli.precision);  // the parser accepted only these names
  kiln::log(Severity::kInfo, "loading " + model);
  ir::Network net = onnx::load_model(model);
  // Profile k takes the k-th group of --profile entries and the k-th set of --minShapes/--optShapes/--maxShapes.
  std::vector<std::vector<InputShapes>> flags = profile_flags(cli.profiles), sets = trtexec_profiles(cli);
  for (size_t k = 0; k < std::max(flags.size(), sets.size()); ++k) {
    std::vector<InputShapes> profile;
    if (k < flags.size()) profile = flags[k];
    if (k < sets.size())
      for (const InputShapes& shapes : sets[k]) {
        for (const InputShapes& given : profile)
          if (given.input == shapes.input)
            fail(ErrorCode::kInvalidArgument, "'", shapes.input, "' has both --profile and --min/opt/maxShapes",
                 k ? str(" in profile ", k) : "", "; give one");
        profile.push_back(shapes);
      }
    for (const InputShapes& shapes : profile)
      builder::add_input_profile(net, shapes.input, shapes.min, shapes.opt, shapes.max, options, k);
  }
  require_ranges(net, options);
  for (const std::string& spec : cli.data_dependent_bounds) {
    size_t eq = spec.rfind('=');
    std::string name = eq == std::string::npos ? "" : spec.substr(0, eq), number = eq == std::string::npos ? "" : spec.substr(eq + 1);
    if (name.empty() || number.empty() || number.size() > 18 || number.find_first_not_of("0123456789") != std::string::npos)
      fail(ErrorCode::kInvalidArgument, "--data-dependent-bound '", spec, "' is not NAME=N (a tensor's name, then its largest size)");
    if (!options.data_dependent_bounds.emplace(name, std::stoll(number)).second)
      fail(ErrorCode::kInvalidArgument, "--data-dependent-bound names '", name, "' twice");
  }
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
  doc["ranges"] = ranges_json(p.network.dim_ranges());
  doc["profiles"] = Json::array();
  for (const ir::DimRanges& profile : p.profiles) doc["profiles"].push_back(ranges_json(profile));
  // The plan stays useful without the GPU (the CPU device runs it), so this is
  // a warning; but it is better learnt here than from Engine::create on a GPU machine.
  GpuSupportReport gpu = gpu_support_report(p);
  if (!gpu.unsupported.empty()) {
    std::string message = str("the GPU runtime cannot run ", gpu.nodes - gpu.supported, " of ", gpu.nodes,
                              " nodes, so `kiln run --device cuda` will refuse this plan (the CPU device runs it):");
    for (const std::string& line : gpu_support_lines(gpu.unsupported)) message += "\n  " + line;
    kiln::log(Severity::kWarning, message);
  }
  doc["gpu_support"] = gpu_support_json(gpu);
  return kOk;
}

}  // namespace kiln::cli
