// Runtime internals shared by the engine (engine.cpp) and its execution
// contexts (context.cpp): what each holds, and the shape helpers both use.
#pragma once

#include <cudnn.h>

#include <list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cuda_util.h"
#include "graphs/native_graph.h"
#include "kiln/runtime.h"
#include "ops.h"

namespace kiln::runtime {

// Engines with data-dependent sizes: a point in the node order where enqueue
// copies a few values to the host and waits for them, to size what follows.
struct Readback {
  size_t node = 0;     // the node in the plan's order
  bool after = false;  // after its launches (a count made on the device), else before them (its small inputs)
};

struct EngineState {
  plan::Plan plan;
  RuntimeConfig config;
  int device = 0;
  int sm_count = 1;
  int arch = 0;
  DeviceBuffer weights;
  std::vector<int64_t> weight_offset;  // per value, -1 if not a weight
  KernelStore store;
  std::vector<std::unique_ptr<Op>> ops;  // per node
  std::vector<Readback> readbacks;       // in node order; empty when every size follows from the input shapes
  size_t readback_scratch_bytes = 0;     // device scratch per context: counts and their work areas (ScratchSlot)
  size_t readback_host_bytes = 0;        // pinned host memory per context: what one readback copies
  // "tensor 'idx' (node 'nz', NonZero)": the first size that depends on data; empty when none does.
  std::string data_dependent;
};

// A native CUDA graph, the input/output addresses it launches with, whether
// kernels were swapped in since it was captured, and when it last ran.
struct GraphVariant {
  graphs::NativeGraph graph;
  std::vector<void*> pointers;
  bool stale_kernels = false;
  int64_t last_use = 0;
};
// The launches of one set of input shapes, prepared once (host work only) and kept.
struct PreparedShape {
  std::string key;
  ShapeEnv shapes;
  std::vector<Step> steps;
  size_t pending = 0;  // launches still waiting for a specialized kernel
  double prepare_ms = 0;
  int calls = 0;       // enqueues at this shape
  // Native CUDA graphs of this shape, one per set of input/output addresses
  // seen lately (callers that keep their last result alive alternate between
  // two output buffers: each set replays its own graph instead of repairing
  // one graph every call), and why capturing failed.
  std::vector<GraphVariant> graphs;
  // Why the last capture failed; captures are tried again from call
  // `retry_capture_at` on, backing off as failures repeat.
  std::string capture_failure;
  int capture_failures = 0;
  int retry_capture_at = 0;
};

// Kernels the caller released with release_captured_kernels: kept until the
// event recorded then has passed.
struct ReleasedKernels {
  cudaEvent_t event = nullptr;
  std::vector<std::shared_ptr<Specialization>> kernels;
};

struct PinnedFree {
  void operator()(std::byte* p) const { cudaFreeHost(p); }
};

struct ContextState {
  const EngineState* engine;
  DeviceBuffer arena, workspace;
  // Where kernels leave the counts enqueue reads back, and the pinned host
  // memory it copies them (and small tensors) into; made with the context.
  DeviceBuffer readback_scratch;
  std::unique_ptr<std::byte, PinnedFree> readback_host;
  bool warned_data_dependent = false;  // the graph fallback's warning, once per context
  cublasLtHandle_t lt = nullptr;
  cudnnHandle_t cudnn = nullptr;  // made only when the plan has cuDNN work
  std::map<std::string, std::vector<int64_t>, std::less<>> input_dims;
  // Per input index: its entry in input_dims once set through the indexed API
  // (map nodes stay put), so an unchanged shape is one comparison.
  std::vector<const std::vector<int64_t>*> input_slots;
  std::vector<void*> bound;  // per value id: user pointer for inputs and outputs
  std::vector<bool> io;      // per value id: a network input or output (must be bound)
  std::list<PreparedShape> shapes;  // most recently used first
  PreparedShape* current = nullptr;
  // A data-dependent engine's dims asked for before enqueue sized them (see tensor_shape).
  std::vector<int64_t> dims_before_enqueue;
  std::vector<void*> pointers;  // per value id, resolved at enqueue
  // Specialized kernels of shapes this context forgot: held until an event
  // recorded after the context's later work has passed, so no module is
  // unloaded under a kernel still queued or running.
  std::vector<std::shared_ptr<Specialization>> retiring, fenced;
  cudaEvent_t fence = nullptr;
  bool fence_pending = false;
  // Graphs for calls on the legacy default stream, which cannot be captured,
  // run on this non-blocking stream, joined to the caller's by two events.
  cudaStream_t own_stream = nullptr;
  cudaEvent_t joined_in = nullptr, joined_out = nullptr;
  // Specialized kernels recorded into the caller's captures: a graph of the
  // caller's may launch them any time, so they stay loaded until the caller
  // releases them or the context goes.
  std::set<std::shared_ptr<Specialization>> captured;
  std::vector<ReleasedKernels> released;
  int profile = 0;  // the optimization profile whose shapes this context runs
  KernelSpecialization specialization = KernelSpecialization::kLazy;
  CudaGraphStrategy graph_strategy = CudaGraphStrategy::kDisabled;
  ExecutionContext::GraphStats stats;
  graphs::GraphCounters counters;

  ~ContextState();
};

using InputDims = std::map<std::string, std::vector<int64_t>, std::less<>>;
// Binds symbols from the input dims and evaluates every value's dims. With
// `resolved` (data-dependent sizes read back so far, possibly none), values
// whose dims wait for others are marked pending instead of failing.
ShapeEnv evaluate_shapes(const ir::Network& net, const InputDims& input_dims, const ir::SymbolBindings* resolved = nullptr);
// "x:1x16x512,mask:1x16": the key of a set of input shapes.
std::string shape_key(const InputDims& dims);

// The prepared launches for the context's current input shapes (prepared now if new).
PreparedShape& prepared_shape(ContextState& c);
// The prepared launches of nodes [begin, end) at `shapes`, kept under `key`
// (prepared now if new), with the given kernel specialization strategy.
PreparedShape& prepared_launches(ContextState& c, const std::string& key, const ShapeEnv& shapes, size_t begin, size_t end,
                                 KernelSpecialization strategy);
// Every value's device address for the next call.
void resolve_pointers(ContextState& c);
// One step's launch(es) on `stream`, at the addresses resolve_pointers found.
void launch_step(const ContextState& c, const Step& step, cudaStream_t stream);

// Data-dependent sizes (readback.cpp): finds the engine's readback points;
// gives a new context its scratch; runs one enqueue stage by stage.
void plan_readbacks(EngineState& e);
void make_readback_memory(ContextState& c);
void enqueue_data_dependent(ContextState& c, cudaStream_t stream);

}  // namespace kiln::runtime
