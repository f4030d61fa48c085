#include "nvrtc.h"

#include <nvrtc.h>

#include <regex>
#include <sstream>

#include "kiln/error.h"

namespace kiln::jit {

namespace {

void check(nvrtcResult r, const char* what, const std::string& name) {
  if (r != NVRTC_SUCCESS) fail(ErrorCode::kInternal, "NVRTC ", what, " failed for kernel '", name, "': ", nvrtcGetErrorString(r));
}

// Quotes the source lines the log points at ("kernel.cu(12): error ...").
std::string excerpt(const std::string& log, const std::string& source) {
  std::vector<std::string> lines;
  std::istringstream in(source);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::string out;
  std::regex where(R"(\((\d+)\): (error|warning))");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), where); it != std::sregex_iterator(); ++it) {
    size_t n = std::stoul((*it)[1]);
    if (n >= 1 && n <= lines.size()) out += str("  line ", n, ": ", lines[n - 1], "\n");
  }
  return out;
}

std::vector<std::string> option_list(int arch) { return {str("--gpu-architecture=sm_", arch), "--std=c++17", "-default-device"}; }

}  // namespace

std::string compile_options(int arch) {
  std::string joined;
  for (auto& o : option_list(arch)) joined += o + " ";
  return joined;
}

int nvrtc_version() {
  int major = 0, minor = 0;
  nvrtcVersion(&major, &minor);
  return major * 1000 + minor * 10;
}

std::string compile_to_cubin(const CompileRequest& request) {
  nvrtcProgram program;
  check(nvrtcCreateProgram(&program, request.source.c_str(), (request.name + ".cu").c_str(), 0, nullptr, nullptr),
        "create", request.name);
  std::vector<std::string> owned = option_list(request.arch);
  std::vector<const char*> options;
  for (auto& o : owned) options.push_back(o.c_str());
  nvrtcResult result = nvrtcCompileProgram(program, int(options.size()), options.data());
  size_t log_size = 0;
  nvrtcGetProgramLogSize(program, &log_size);
  std::string log(log_size, '\0');
  if (log_size > 1) nvrtcGetProgramLog(program, log.data());
  log.resize(log.find('\0') == std::string::npos ? log.size() : log.find('\0'));  // drop the C terminator
  if (result != NVRTC_SUCCESS) {
    nvrtcDestroyProgram(&program);
    fail(ErrorCode::kInternal, "kernel '", request.name, "' does not compile for sm_", request.arch, ":\n", log,
         excerpt(log, request.source));
  }
  size_t size = 0;
  check(nvrtcGetCUBINSize(program, &size), "get cubin size", request.name);
  std::string cubin(size, '\0');
  check(nvrtcGetCUBIN(program, cubin.data()), "get cubin", request.name);
  nvrtcDestroyProgram(&program);
  return cubin;
}

}  // namespace kiln::jit
