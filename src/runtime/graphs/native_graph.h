// One executable CUDA graph of a context's prepared shape: captured from the
// context's own launches (ThreadLocal mode, so other threads' allocations and
// module loads do not disturb it), repaired by capturing again and updating
// the executable graph in place, or, for new input/output addresses, by
// rewriting only the nodes' arguments that hold them (node_patching.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace kiln::runtime::graphs {

// The legacy default stream (null or cudaStreamLegacy): never captured.
bool is_legacy_stream(cudaStream_t stream);
// Whether `stream` is being captured. When CUDA cannot tell (the legacy stream
// while another thread captures in global mode) the answer is yes: nothing a
// capture forbids may happen then.
bool stream_is_capturing(cudaStream_t stream);

// kiln's own captures and the CUDA calls of other kiln threads that could
// invalidate them (loading and unloading kernel modules, allocating and
// freeing device memory: calls that may synchronize the device) exclude each
// other process-wide. Captures share the gate; those calls hold it alone,
// waiting for captures in flight (they are short), except unloading, which
// is skipped and retried at the next safe point. A thread inside one of
// kiln's captures never waits for the gate (such a call would fail anyway).
class CaptureGate {
 public:
  // Held while a capture of kiln's is open on this thread.
  class Shared {
   public:
    Shared();
    ~Shared();
    Shared(const Shared&) = delete;
    Shared& operator=(const Shared&) = delete;
  };
  // Held around a call that must not run during another thread's capture.
  class Exclusive {
   public:
    explicit Exclusive(bool wait = true);
    ~Exclusive();
    Exclusive(const Exclusive&) = delete;
    Exclusive& operator=(const Exclusive&) = delete;
    bool held() const { return held_; }

   private:
    bool held_ = false;
  };
};

struct GraphCounters {
  int64_t captures = 0, instantiations = 0, updates = 0, patches = 0;
};

class NodePatcher;

class NativeGraph {
 public:
  NativeGraph();
  ~NativeGraph();
  NativeGraph(const NativeGraph&) = delete;
  NativeGraph& operator=(const NativeGraph&) = delete;
  NativeGraph(NativeGraph&& other) noexcept;
  NativeGraph& operator=(NativeGraph&& other) noexcept;

  bool ready() const { return exec_ != nullptr; }
  // Captures what `record` launches on `stream` and makes it this graph's work:
  // instantiated the first time, later an in-place update of the executable
  // graph (re-instantiated if the update is refused). Returns an empty string
  // on success, else why it failed; the capture is always ended, and on
  // failure the graph is left empty. `io`, `io_bytes`: the input/output
  // buffers the launches use, for patch() (none: the graph is only ever
  // captured again).
  std::string capture(cudaStream_t stream, const std::function<void(cudaStream_t)>& record, GraphCounters& counters,
                      const std::vector<void*>& io = {}, const std::vector<size_t>& io_bytes = {});
  // Points the graph at new input/output addresses without a capture, where
  // an earlier repair showed where they sit; false: capture again.
  bool patch(const std::vector<void*>& io, GraphCounters& counters);
  cudaError_t launch(cudaStream_t stream) const { return cudaGraphLaunch(exec_, stream); }
  void reset();

 private:
  cudaGraphExec_t exec_ = nullptr;
  cudaGraph_t source_ = nullptr;  // what exec_ was instantiated from: its nodes name exec_'s
  std::unique_ptr<NodePatcher> patcher_;
};

}  // namespace kiln::runtime::graphs
