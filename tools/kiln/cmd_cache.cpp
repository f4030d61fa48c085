// kiln cache: inspect, clear and pre-fill runtime cache files.
#include <iostream>

#include "cli.h"
#include "kiln/plan.h"
#include "kiln/runtime.h"

namespace kiln::cli {

namespace {

void print_warnings(const std::vector<std::string>& warnings) {
  for (auto& w : warnings) std::cerr << "kiln cache: warning: " << w << "\n";
}

int parse_arch(const std::string& text) {
  std::string digits = text.rfind("sm_", 0) == 0 ? text.substr(3) : text;
  if (digits.empty() || digits.size() > 3 || digits.find_first_not_of("0123456789") != std::string::npos)
    fail(ErrorCode::kInvalidArgument, "--arch must look like sm_90");
  return std::stoi(digits);
}

}  // namespace

int cmd_cache(const Args& args) {
  const char* usage =
      "usage: kiln cache info FILE | kiln cache clear FILE | kiln cache warm PLAN.kiln --arch sm_90 --cache FILE [--shapes x:4x256,mask:4x16 ...]";
  if (args.positional.empty()) fail(ErrorCode::kInvalidArgument, usage);
  const std::string& verb = args.positional[0];
  runtime::CacheFilePolicy policy = cache_file_policy(args);
  runtime::RuntimeCache cache(runtime::compiler_version(), policy);
  // clear and warm exist to change the file: not writing it is a failure.
  auto save = [&](const std::string& file, bool replacing) {
    runtime::SaveResult result = replacing ? cache.save_file_replacing(file) : cache.save_file(file);
    print_warnings(result.warnings);
    if (!result.saved) fail(ErrorCode::kIoError, "could not write the runtime cache ", file);
  };
  if (verb == "info" && args.positional.size() == 2) {
    // Reads only: no lock file is created, nothing is written.
    const std::string& file = args.positional[1];
    print_warnings(cache.merge_serialized(runtime::read_cache_file(file), file));
    std::cout << "entries: " << cache.entry_count() << "\nbytes: " << cache.bytes() << "\n";
    for (auto& [arch, n] : cache.entries_per_arch()) std::cout << "sm_" << arch << ": " << n << "\n";
    if (!cache.loaded_origin().empty()) std::cout << "written by: " << cache.loaded_origin() << "\n";
    std::string problem = runtime::cache_file_trust_problem(file, policy.shared);
    std::cout << "trusted: " << (problem.empty() ? "yes" : "no: " + problem) << "\n";
    return kOk;
  }
  if (verb == "clear" && args.positional.size() == 2) {
    save(args.positional[1], true);
    std::cout << "cleared " << args.positional[1] << "\n";
    return kOk;
  }
  if (verb == "warm" && args.positional.size() == 2) {
    if (!args.has("--arch") || !args.has("--cache")) fail(ErrorCode::kInvalidArgument, usage);
    int arch = parse_arch(args.get("--arch"));
    std::vector<runtime::InputShapes> shape_sets;
    for (const std::string& spec : args.all("--shapes")) {  // each flag: one set of input shapes
      runtime::InputShapes set;
      for (auto& [name, dims] : parse_shapes({spec})) set[name] = dims;
      shape_sets.push_back(std::move(set));
    }
    plan::Plan p = plan::load(args.positional[1]);
    begin_input_phase();
    const std::string& file = args.get("--cache");
    print_warnings(cache.load_file(file));
    size_t before = cache.entry_count();
    int kernels = runtime::warm_cache(p, arch, cache, [](const std::string& line) { std::cerr << "kiln cache: " << line << "\n"; },
                                      shape_sets);
    save(file, false);
    std::cout << "warmed " << file << ": " << kernels << " kernels for sm_" << arch << ", " << cache.entry_count() - before
              << " new entries\n";
    return kOk;
  }
  fail(ErrorCode::kInvalidArgument, usage);
}

}  // namespace kiln::cli
