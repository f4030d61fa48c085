#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <thread>

#include "cuda_util.h"
#include "graphs/native_graph.h"
#include "jit/nvrtc.h"
#include "kiln/logging.h"
#include "ops.h"

namespace kiln::runtime {

struct KernelStore::Job {
  int module;
  codegen::Params params;
  std::shared_ptr<Specialization> entry;
};

// Parameters compare by value: equal parameters share one specialized kernel.
struct ParamsLess {
  bool operator()(const std::pair<int, codegen::Params>& a, const std::pair<int, codegen::Params>& b) const {
    if (a.first != b.first) return a.first < b.first;
    return std::memcmp(a.second.v, b.second.v, sizeof(a.second.v)) < 0;
  }
};

Specialization::~Specialization() {
  if (!library) return;
  std::lock_guard lock(retired->mutex);
  retired->libraries.push_back(library);
  retired->any.store(true, std::memory_order_relaxed);
}

struct KernelStore::Specializer {
  using Key = std::pair<int, codegen::Params>;
  struct Entry {
    std::shared_ptr<Specialization> specialization;
    std::list<Key>::iterator recency;
  };
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<Job> queue;
  std::map<Key, Entry, ParamsLess> entries;
  std::list<Key> recency;  // most recently requested first
  std::vector<std::thread> threads;
  size_t max_kernels = 0;
  bool stop = false;
};

KernelStore::KernelStore() = default;

KernelStore::~KernelStore() {
  if (specializer_) {
    {
      std::lock_guard lock(specializer_->mutex);
      specializer_->stop = true;
    }
    specializer_->wake.notify_all();
    for (auto& t : specializer_->threads) t.join();
    specializer_.reset();  // retires what no context holds any more (contexts are gone by now)
    unload_retired(/*wait=*/true);
  }
  graphs::CaptureGate::Exclusive gate;
  for (cudaLibrary_t lib : libraries_)
    if (lib) cudaLibraryUnload(lib);
}

int KernelStore::add(const std::string& name, Generator generator) {
  std::string source = generator(std::nullopt);
  for (size_t i = 0; i < sources_.size(); ++i)
    if (sources_[i] == source) {
      handles_.push_back(int(i));
      return int(handles_.size() - 1);
    }
  names_.push_back(name);
  sources_.push_back(std::move(source));
  generators_.push_back(std::move(generator));
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
  auto work = [&] {
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
  for (int t = 0; t < std::max(1, std::min<int>(threads, int(todo.size()))); ++t) pool.emplace_back(work);
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
  arch_ = arch;
  cache_ = cache;
  std::vector<std::string> cubins = compile(arch, threads, progress, cache);
  size_t n = sources_.size();
  libraries_.assign(n, nullptr);
  kernels_.assign(n, nullptr);
  graphs::CaptureGate::Exclusive gate;
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

void KernelStore::start_specializer(int device, int threads, size_t max_kernels) {
  specializer_ = std::make_unique<Specializer>();
  specializer_->max_kernels = max_kernels;
  for (int t = 0; t < threads; ++t) specializer_->threads.emplace_back([this, device] { worker(device); });
}

// Compiles (or takes from the cache) and loads one specialized kernel. Never
// allocates device memory itself: a user's global-mode capture stays valid.
void KernelStore::compile_specialized(Job& job) const {
  try {
    std::string source = generators_[size_t(job.module)](job.params);
    std::string name = names_[size_t(job.module)] + "_specialized";
    CacheKey key = kernel_cache_key(source, jit::compile_options(arch_), arch_, jit::nvrtc_version());
    std::string cubin;
    if (auto hit = cache_ ? cache_->find(key, arch_) : std::nullopt) {
      cubin = std::move(*hit);
      ++specialized_cache_hits_;
    } else {
      cubin = jit::compile_to_cubin({name, source, arch_});
      if (cache_) cache_->insert(key, arch_, cubin);
    }
    cudaLibrary_t library = nullptr;
    cudaKernel_t kernel = nullptr;
    graphs::CaptureGate::Exclusive gate;
    if (cudaLibraryLoadData(&library, cubin.data(), nullptr, nullptr, 0, nullptr, nullptr, 0) != cudaSuccess ||
        cudaLibraryGetKernel(&kernel, library, codegen::kEntry) != cudaSuccess) {
      cudaGetLastError();
      log(Severity::kWarning, str("loading the shape-specialized ", name, " failed; the generic kernel keeps serving"));
      job.entry->state.store(Specialization::kFailed, std::memory_order_release);
      return;
    }
    job.entry->library = library;
    job.entry->retired = retired_;
    retired_->loaded.fetch_add(1);
    job.entry->kernel = kernel;
    job.entry->state.store(Specialization::kReady, std::memory_order_release);
  } catch (const Error& e) {
    log(Severity::kWarning, str("a shape-specialized kernel did not compile; the generic one keeps serving: ", e.what()));
    job.entry->state.store(Specialization::kFailed, std::memory_order_release);  // the generic kernel keeps serving
  }
}

void KernelStore::worker(int device) const {
  cudaSetDevice(device);
  for (;;) {
    Job job;
    {
      std::unique_lock lock(specializer_->mutex);
      specializer_->wake.wait(lock, [&] { return specializer_->stop || !specializer_->queue.empty(); });
      if (specializer_->stop) return;
      job = std::move(specializer_->queue.front());
      specializer_->queue.pop_front();
    }
    // Forgotten by the store and held by no prepared shape: no one can ask for it again.
    if (job.entry.use_count() == 1) continue;
    compile_specialized(job);
  }
}

void KernelStore::unload_retired(bool wait) const {
  graphs::CaptureGate::Exclusive gate(wait);
  if (!gate.held()) return;  // a capture is open somewhere: next time
  std::vector<cudaLibrary_t> libraries;
  {
    std::lock_guard lock(retired_->mutex);
    libraries.swap(retired_->libraries);
    retired_->any.store(false, std::memory_order_relaxed);
  }
  for (cudaLibrary_t lib : libraries) {
    cudaLibraryUnload(lib);
    retired_->loaded.fetch_sub(1);
  }
}

bool KernelStore::warm_specialized(int handle, const codegen::Params& params, int arch, RuntimeCache& cache) const {
  int module = handles_.at(size_t(handle));
  std::string source = generators_[size_t(module)](params);
  CacheKey key = kernel_cache_key(source, jit::compile_options(arch), arch, jit::nvrtc_version());
  if (cache.find(key, arch)) return false;
  cache.insert(key, arch, jit::compile_to_cubin({names_[size_t(module)] + "_specialized", source, arch}));
  return true;
}

std::shared_ptr<Specialization> KernelStore::specialize(int handle, const codegen::Params& params) const {
  if (!specializer_) return nullptr;
  int module = handles_.at(size_t(handle));
  std::shared_ptr<Specialization> entry;
  {
    std::lock_guard lock(specializer_->mutex);
    Specializer& s = *specializer_;
    auto it = s.entries.find({module, params});
    if (it != s.entries.end()) {
      s.recency.splice(s.recency.begin(), s.recency, it->second.recency);
      return it->second.specialization;
    }
    if (s.max_kernels == 0) return nullptr;
    if (s.entries.size() >= s.max_kernels) {  // forget the least recently requested
      s.entries.erase(s.recency.back());
      s.recency.pop_back();
    }
    entry = std::make_shared<Specialization>();
    s.recency.emplace_front(module, params);
    s.entries.emplace(s.recency.front(), Specializer::Entry{entry, s.recency.begin()});
    s.queue.push_back(Job{module, params, entry});
  }
  specializer_->wake.notify_one();
  return entry;
}

}  // namespace kiln::runtime
