#include <atomic>
#include <map>
#include <thread>

#include "cuda_util.h"
#include "jit/nvrtc.h"
#include "ops.h"

namespace kiln::runtime {

KernelStore::~KernelStore() {
  for (cudaLibrary_t lib : libraries_)
    if (lib) cudaLibraryUnload(lib);
}

int KernelStore::add(const std::string& name, const std::string& source) {
  for (size_t i = 0; i < sources_.size(); ++i)
    if (sources_[i] == source) {
      handles_.push_back(int(i));
      return int(handles_.size() - 1);
    }
  names_.push_back(name);
  sources_.push_back(source);
  handles_.push_back(int(sources_.size() - 1));
  return int(handles_.size() - 1);
}

void KernelStore::compile_all(int arch, int threads, const std::function<void(const std::string&)>& progress) {
  size_t n = sources_.size();
  std::vector<std::string> cubins(n);
  std::vector<std::string> errors(n);
  std::atomic<size_t> next{0}, done{0};
  auto worker = [&] {
    for (size_t i; (i = next++) < n;) {
      try {
        cubins[i] = jit::compile_to_cubin({names_[i], sources_[i], arch});
      } catch (const Error& e) {
        errors[i] = e.what();
      }
      size_t d = ++done;
      if (progress && (d % 8 == 0 || d == n)) progress(str("compiled ", d, "/", n, " kernels for sm_", arch));
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, std::min<int>(threads, int(n))); ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  for (size_t i = 0; i < n; ++i)
    if (!errors[i].empty()) fail(ErrorCode::kInternal, errors[i]);
  libraries_.assign(n, nullptr);
  kernels_.assign(n, nullptr);
  for (size_t i = 0; i < n; ++i) {
    KILN_CUDA(cudaLibraryLoadData(&libraries_[i], cubins[i].data(), nullptr, nullptr, 0, nullptr, nullptr, 0),
              "loading kernel " + names_[i]);
    KILN_CUDA(cudaLibraryGetKernel(&kernels_[i], libraries_[i], codegen::kEntry), "finding kernel " + names_[i]);
  }
}

}  // namespace kiln::runtime
