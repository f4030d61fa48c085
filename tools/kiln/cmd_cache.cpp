// kiln cache: inspect, clear and pre-fill runtime cache files.
#include <iostream>

#include "cli.h"
#include "kiln/plan.h"
#include "kiln/runtime.h"

namespace kiln::cli {

namespace {

int parse_arch(const std::string& text) {
  std::string digits = text.rfind("sm_", 0) == 0 ? text.substr(3) : text;
  if (digits.empty() || digits.size() > 3 || digits.find_first_not_of("0123456789") != std::string::npos)
    fail(ErrorCode::kInvalidArgument, "--arch must look like sm_90");
  return std::stoi(digits);
}

}  // namespace

int cmd_cache(const CacheOptions& options, Json& doc) {
  const std::string& verb = options.verb;
  runtime::CacheFilePolicy policy;
  policy.shared = options.shared_runtime_cache;
  runtime::RuntimeCache cache(runtime::compiler_version(), policy);
  // clear and warm exist to change the file: not writing it is a failure.
  auto save = [&](const std::string& file, bool replacing) {
    runtime::SaveResult result = replacing ? cache.save_file_replacing(file) : cache.save_file(file);  // problems are logged
    if (!result.saved) fail(ErrorCode::kIoError, "could not write the runtime cache ", file);
  };
  if (verb == "info") {
    // Reads only: no lock file is created, nothing is written.
    const std::string& file = options.file;
    for (auto& w : cache.merge_serialized(runtime::read_cache_file(file), file)) kiln::log(Severity::kWarning, w);
    std::cout << "entries: " << cache.entry_count() << "\nbytes: " << cache.bytes() << "\n";
    for (auto& [arch, n] : cache.entries_per_arch()) std::cout << "sm_" << arch << ": " << n << "\n";
    if (!cache.loaded_origin().empty()) std::cout << "written by: " << cache.loaded_origin() << "\n";
    std::string problem = runtime::cache_file_trust_problem(file, policy.shared);
    std::cout << "trusted: " << (problem.empty() ? "yes" : "no: " + problem) << "\n";
    doc["file"] = file;
    doc["entries"] = cache.entry_count();
    doc["bytes"] = cache.bytes();
    doc["per_arch"] = Json::object();
    for (auto& [arch, n] : cache.entries_per_arch()) doc["per_arch"]["sm_" + std::to_string(arch)] = n;
    doc["written_by"] = cache.loaded_origin().empty() ? Json(nullptr) : Json(cache.loaded_origin());
    doc["trusted"] = problem.empty();
    if (!problem.empty()) doc["trust_problem"] = problem;
    return kOk;
  }
  if (verb == "clear") {
    save(options.file, true);
    std::cout << "cleared " << options.file << "\n";
    return kOk;
  }
  // warm (the parser knows no other verb)
  int arch = parse_arch(options.arch);
  std::vector<runtime::InputShapes> shape_sets;
  for (const std::string& spec : options.shapes) {  // each flag: one set of input shapes
    runtime::InputShapes set;
    for (auto& [name, dims] : parse_shapes({spec}, "--shapes")) set[name] = dims;
    shape_sets.push_back(std::move(set));
  }
  plan::Plan p = plan::load(options.file);
  begin_input_phase();
  const std::string& file = options.cache;
  cache.load_file(file);  // its problems are logged
  size_t before = cache.entry_count();
  int kernels = runtime::warm_cache(p, arch, cache, {}, shape_sets);
  save(file, false);
  std::cout << "warmed " << file << ": " << kernels << " kernels for sm_" << arch << ", " << cache.entry_count() - before
            << " new entries\n";
  return kOk;
}

}  // namespace kiln::cli
