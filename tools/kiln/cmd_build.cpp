// kiln build: ONNX model -> .kiln plan, on any machine (no GPU needed).
#include <iostream>

#include "cli.h"
#include "kiln/builder.h"
#include "kiln/onnx.h"

namespace kiln::cli {

namespace {

std::vector<int64_t> parse_dims(const std::string& text, const std::string& spec) {
  std::vector<int64_t> dims;
  size_t at = 0;
  while (at <= text.size()) {
    size_t x = text.find('x', at);
    std::string num = text.substr(at, x == std::string::npos ? std::string::npos : x - at);
    if (num.empty() || num.size() > 12 || num.find_first_not_of("0123456789") != std::string::npos)
      fail(ErrorCode::kInvalidArgument, "--profile '", spec, "' has a bad dim '", num, "'");
    dims.push_back(std::stoll(num));
    if (x == std::string::npos) break;
    at = x + 1;
  }
  return dims;
}

}  // namespace

int cmd_build(const Args& args) {
  if (args.positional.size() != 1 || !args.has("--output"))
    fail(ErrorCode::kInvalidArgument,
         "usage: kiln build MODEL.onnx -o OUT.kiln [--precision fp32|fp16|bf16] [--profile NAME:MINxD/OPTxD/MAXxD ...]");
  builder::BuildOptions options;
  auto precision = plan::parse_precision(args.get("--precision", "fp32"));
  if (!precision) fail(ErrorCode::kInvalidArgument, "--precision must be fp32, fp16 or bf16");
  options.precision = *precision;
  options.progress = [](const std::string& line) { std::cerr << "kiln build: " << line << "\n"; };
  const std::string& model = args.positional[0];
  std::cerr << "kiln build: loading " << model << "\n";
  ir::Network net = onnx::load_model(model);
  for (const std::string& spec : args.all("--profile")) {
    size_t colon = spec.rfind(':');
    std::string name = colon == std::string::npos ? "" : spec.substr(0, colon);
    std::string rest = colon == std::string::npos ? "" : spec.substr(colon + 1);
    size_t s1 = rest.find('/'), s2 = s1 == std::string::npos ? s1 : rest.find('/', s1 + 1);
    if (name.empty() || s2 == std::string::npos)
      fail(ErrorCode::kInvalidArgument, "--profile '", spec, "' must look like name:1x128/4x128/8x128 (min/opt/max)");
    builder::add_input_profile(net, name, parse_dims(rest.substr(0, s1), spec),
                               parse_dims(rest.substr(s1 + 1, s2 - s1 - 1), spec), parse_dims(rest.substr(s2 + 1), spec),
                               options);
  }
  plan::Plan p = builder::build(net, options, model);
  plan::save(p, args.get("--output"));
  std::cerr << "kiln build: wrote " << args.get("--output") << " (" << p.network.nodes().size() << " kernels, arena "
            << p.arena_bytes << " bytes, weights " << p.network.parameter_bytes() << " bytes, "
            << plan::precision_name(p.precision) << ")\n";
  return kOk;
}

}  // namespace kiln::cli
