// One executable CUDA graph of a context's prepared shape: captured from the
// context's own launches (ThreadLocal mode, so other threads' allocations and
// module loads do not disturb it), repaired by capturing again and updating
// the executable graph in place.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <string>

namespace kiln::runtime::graphs {

// The legacy default stream (null or cudaStreamLegacy): never captured.
bool is_legacy_stream(cudaStream_t stream);
// Whether `stream` is being captured. When CUDA cannot tell (the legacy stream
// while another thread captures in global mode) the answer is yes: nothing a
// capture forbids may happen then.
bool stream_is_capturing(cudaStream_t stream);

struct GraphCounters {
  int64_t captures = 0, instantiations = 0, updates = 0;
};

class NativeGraph {
 public:
  NativeGraph() = default;
  ~NativeGraph();
  NativeGraph(const NativeGraph&) = delete;
  NativeGraph& operator=(const NativeGraph&) = delete;
  NativeGraph(NativeGraph&& other) noexcept : exec_(other.exec_) { other.exec_ = nullptr; }
  NativeGraph& operator=(NativeGraph&& other) noexcept;

  bool ready() const { return exec_ != nullptr; }
  // Captures what `record` launches on `stream` and makes it this graph's work:
  // instantiated the first time, later an in-place update of the executable
  // graph (re-instantiated if the update is refused). Returns an empty string
  // on success, else why it failed; the capture is always ended, and on
  // failure the graph is left empty.
  std::string capture(cudaStream_t stream, const std::function<void(cudaStream_t)>& record, GraphCounters& counters);
  cudaError_t launch(cudaStream_t stream) const { return cudaGraphLaunch(exec_, stream); }
  void reset();

 private:
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace kiln::runtime::graphs
