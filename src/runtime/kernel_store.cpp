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

std::vector<std::string> KernelStore::compile(int arch, int threads, const std::function<void(const std::string&)>& progress,
                                              RuntimeCache* cache) {
  size_t n = sources_.size();
  std::vector<std::string> cubins(n);
  std::vector<std::string> errors(n);
  std::vector<CacheKey> keys(n);
  std::string options = jit::compile_options(arch);
  int version = jit::nvrtc_version();
  std::vector<size_t> todo;
  for (size_t i = 0; i < n; ++i) {
    keys[i] = kernel_cache_key(sources_[i], options, arch, version);
    if (auto hit = cache ? cache->find(keys[i], arch) : std::nullopt) cubins[i] = std::move(*hit);
    else todo.push_back(i);
  }
  cache_hits_ = int(n - todo.size());
  if (progress && cache) progress(str(cache_hits_, " of ", n, " kernels from the runtime cache"));
  std::atomic<size_t> next{0}, done{0};
  auto worker = [&] {
    for (size_t t; (t = next++) < todo.size();) {
      size_t i = todo[t];
      try {
        cubins[i] = jit::compile_to_cubin({names_[i], sources_[i], arch});
        if (cache) cache->insert(keys[i], arch, cubins[i]);
      } catch (const Error& e) {
        errors[i] = e.what();
      }
      size_t d = ++done;
      if (progress && (d % 8 == 0 || d == todo.size())) progress(str("compiled ", d, "/", todo.size(), " kernels for sm_", arch));
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, std::min<int>(threads, int(todo.size()))); ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  for (size_t i = 0; i < n; ++i)
    if (!errors[i].empty()) fail(ErrorCode::kInternal, errors[i]);
  return cubins;
}

void KernelStore::compile_into_cache(int arch, int threads, const std::function<void(const std::string&)>& progress,
                                     RuntimeCache& cache) {
  compile(arch, threads, progress, &cache);
}

void KernelStore::compile_all(int arch, int threads, const std::function<void(const std::string&)>& progress,
                              RuntimeCache* cache) {
  std::vector<std::string> cubins = compile(arch, threads, progress, cache);
  size_t n = sources_.size();
  libraries_.assign(n, nullptr);
  kernels_.assign(n, nullptr);
  for (size_t i = 0; i < n; ++i) {
    cudaError_t e = cudaLibraryLoadData(&libraries_[i], cubins[i].data(), nullptr, nullptr, 0, nullptr, nullptr, 0);
    if (e != cudaSuccess && cache) {  // a cached cubin the driver refuses: compile it afresh, never run a wrong one
      cudaGetLastError();
      cubins[i] = jit::compile_to_cubin({names_[i], sources_[i], arch});
      cache->insert(kernel_cache_key(sources_[i], jit::compile_options(arch), arch, jit::nvrtc_version()), arch, cubins[i]);
      e = cudaLibraryLoadData(&libraries_[i], cubins[i].data(), nullptr, nullptr, 0, nullptr, nullptr, 0);
    }
    KILN_CUDA(e, "loading kernel " + names_[i]);
    KILN_CUDA(cudaLibraryGetKernel(&kernels_[i], libraries_[i], codegen::kEntry), "finding kernel " + names_[i]);
  }
}

}  // namespace kiln::runtime
