#include "native_graph.h"

#include <pthread.h>

#include <optional>
#include <utility>

#include "kiln/error.h"
#include "node_patching.h"

namespace kiln::runtime::graphs {

namespace {

// Ends a capture on every way out of the scope, so a stream is never left capturing.
class CaptureScope {
 public:
  explicit CaptureScope(cudaStream_t stream) : stream_(stream) {}
  ~CaptureScope() {
    if (!open_) return;
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(stream_, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
  }
  cudaError_t end(cudaGraph_t* graph) {
    open_ = false;
    return cudaStreamEndCapture(stream_, graph);
  }

 private:
  cudaStream_t stream_;
  bool open_ = true;
};

std::string cuda_reason(const char* what, cudaError_t e) {
  cudaGetLastError();
  return str(what, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
}

// Writer-preferring, so threads that keep capturing cannot starve a module
// load or an allocation; a thread never takes its read side twice (below).
pthread_rwlock_t* gate() {
  static pthread_rwlock_t* lock = [] {
    static pthread_rwlock_t l;
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&l, &attr);
    pthread_rwlockattr_destroy(&attr);
    return &l;
  }();
  return lock;
}
thread_local int captures_on_this_thread = 0;

}  // namespace

CaptureGate::Shared::Shared() {
  if (captures_on_this_thread++ == 0) pthread_rwlock_rdlock(gate());
}
CaptureGate::Shared::~Shared() {
  if (--captures_on_this_thread == 0) pthread_rwlock_unlock(gate());
}

CaptureGate::Exclusive::Exclusive(bool wait) {
  if (captures_on_this_thread > 0) return;  // never wait on ourselves
  held_ = (wait ? pthread_rwlock_wrlock(gate()) : pthread_rwlock_trywrlock(gate())) == 0;
}
CaptureGate::Exclusive::~Exclusive() {
  if (held_) pthread_rwlock_unlock(gate());
}

bool is_legacy_stream(cudaStream_t stream) { return stream == nullptr || stream == cudaStreamLegacy; }

bool stream_is_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &status) != cudaSuccess) {
    cudaGetLastError();
    return true;
  }
  return status != cudaStreamCaptureStatusNone;
}

NativeGraph::NativeGraph() = default;
NativeGraph::~NativeGraph() { reset(); }

NativeGraph::NativeGraph(NativeGraph&& other) noexcept
    : exec_(std::exchange(other.exec_, nullptr)), source_(std::exchange(other.source_, nullptr)), patcher_(std::move(other.patcher_)) {}

NativeGraph& NativeGraph::operator=(NativeGraph&& other) noexcept {
  if (this != &other) {
    reset();
    exec_ = std::exchange(other.exec_, nullptr);
    source_ = std::exchange(other.source_, nullptr);
    patcher_ = std::move(other.patcher_);
  }
  return *this;
}

// Freed asynchronously by CUDA if a launch of it is still running.
void NativeGraph::reset() {
  if (exec_) cudaGraphExecDestroy(exec_);
  if (source_) cudaGraphDestroy(source_);
  exec_ = nullptr;
  source_ = nullptr;
  patcher_.reset();
}

bool NativeGraph::patch(const std::vector<void*>& io, GraphCounters& counters) {
  if (!exec_ || !patcher_ || !patcher_->patch(exec_, io)) return false;
  ++counters.patches;
  return true;
}

std::string NativeGraph::capture(cudaStream_t stream, const std::function<void(cudaStream_t)>& record,
                                 GraphCounters& counters, const std::vector<void*>& io, const std::vector<size_t>& io_bytes) {
  CaptureGate::Shared gate;
  if (cudaError_t e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal); e != cudaSuccess) {
    reset();
    return cuda_reason("beginning the capture", e);
  }
  std::string failure;
  cudaGraph_t graph = nullptr;
  {
    CaptureScope scope(stream);
    try {
      record(stream);
    } catch (const Error& error) {
      failure = error.what();
    }
    cudaError_t e = scope.end(&graph);
    if (failure.empty() && e != cudaSuccess) failure = cuda_reason("ending the capture", e);
  }
  if (!failure.empty()) {
    if (graph) cudaGraphDestroy(graph);
    reset();
    return failure;
  }
  ++counters.captures;
  std::optional<GraphImage> image = io.empty() ? std::nullopt : GraphImage::read(graph, io, io_bytes);
  if (exec_) {
    cudaGraphExecUpdateResultInfo info{};
    if (cudaGraphExecUpdate(exec_, graph, &info) == cudaSuccess) {
      ++counters.updates;
      cudaGraphDestroy(graph);
      if (image && patcher_) patcher_->updated(*image);
      else patcher_.reset();
      return {};
    }
    cudaGetLastError();
    reset();
  }
  cudaError_t e = cudaGraphInstantiate(&exec_, graph, 0);
  if (e != cudaSuccess) {
    cudaGraphDestroy(graph);
    exec_ = nullptr;
    return cuda_reason("instantiating the graph", e);
  }
  source_ = graph;
  if (image) patcher_ = std::make_unique<NodePatcher>(std::move(*image));
  ++counters.instantiations;
  return {};
}

}  // namespace kiln::runtime::graphs
