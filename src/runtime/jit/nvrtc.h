// Compiles generated CUDA C++ to a cubin with NVRTC. Needs no GPU.
#pragma once

#include <string>
#include <vector>

namespace kiln::jit {

struct CompileRequest {
  std::string name;    // kernel's name in messages (the node it serves)
  std::string source;  // self-contained CUDA C++
  int arch = 90;       // compute capability as major*10+minor: 80, 86, 89, 90
};

// The cubin bytes. A compile error throws kiln::Error naming the kernel, with
// NVRTC's log and the offending source lines.
std::string compile_to_cubin(const CompileRequest& request);
// NVRTC's version as major*1000 + minor*10 (e.g. 13000).
int nvrtc_version();
// The options compile_to_cubin passes, joined (part of every cache key).
std::string compile_options(int arch);

}  // namespace kiln::jit
