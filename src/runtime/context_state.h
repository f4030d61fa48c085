// Runtime internals shared by the engine (engine.cpp) and its execution
// contexts (context.cpp): what each holds, and the shape helpers both use.
#pragma once

#include <cudnn.h>

#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cuda_util.h"
#include "graphs/native_graph.h"
#include "kiln/runtime.h"
#include "ops.h"

namespace kiln::runtime {

// Engines with data-dependent sizes or host steps: a point in the node order
// where enqueue copies values to the host and waits for them, to size what
// follows or to run a node there.
struct Readback {
  size_t node = 0;     // the node in the plan's order
  bool after = false;  // after its launches (a count made on the device), else before them (its small inputs)
  bool control_flow = false;  // an If, Loop or Scan: enqueue runs it (run_control_flow) in place of launches
  // Enqueue runs the node on the host in place of launches: an ImageDecoder
  // (decode_on_host) or a node on string tensors (run_host_step).
  bool host = false;
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
  // "tensor 'idx' (node 'nz', NonZero) has a size that depends on data", or
  // "node 'loop' (Loop) decides by data what runs": the first readback's
  // reason; empty when there is none.
  std::string data_dependent;
  // "node 'cat' (StringConcat) runs on the host inside the GPU engine": the
  // first host step; empty when there is none.
  std::string host_step;
  // Pinned host memory per context that a host step's numeric inputs, then
  // its numeric outputs, pass through: the most one step needs at the plan's
  // largest shapes.
  size_t host_staging_bytes = 0;
};

// Why enqueue runs an engine stage by stage (the data-dependent size or
// control flow first, else the host step); empty when it need not.
inline const std::string& staged_reason(const EngineState& e) { return e.data_dependent.empty() ? e.host_step : e.data_dependent; }

// A control-flow node's subgraphs, each lowered like an engine's network
// (their kernels in the engine's store, their own weights and memory plan;
// runtime/ops/control_flow.cpp). Enqueue runs them (run_control_flow), so the
// node prepares no launches of its own.
class ControlFlowOp : public Op {
 public:
  std::vector<std::unique_ptr<EngineState>> bodies;  // If: then_branch, else_branch; Loop, Scan: body
  void prepare(PrepareContext&) const override {}
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
  // A subgraph's context: the engine's context, whose library handles and
  // workspace it uses; null for that context itself.
  ContextState* owner = nullptr;
  DeviceBuffer arena, workspace;
  // Where kernels leave the counts enqueue reads back, and the pinned host
  // memory it copies them (and small tensors) into; made with the context.
  DeviceBuffer readback_scratch;
  std::unique_ptr<std::byte, PinnedFree> readback_host;
  bool warned_data_dependent = false;  // the graph fallback's warning, once per context
  // Host steps: per value, the elements of a string tensor the network keeps
  // inside (the caller holds those of its inputs and outputs), assigned by
  // the step that makes it; the pinned memory a step's numeric tensors pass
  // through, and the event recorded behind its uploads from there, waited
  // for before the next step writes it again.
  std::vector<std::vector<std::string>> strings;
  std::unique_ptr<std::byte, PinnedFree> host_staging;
  cudaEvent_t staging_uploaded = nullptr;
  bool staging_pending = false;
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

  // Per node of the plan: the contexts of its subgraphs (a control-flow node's, in ControlFlowOp's order), made with this one.
  std::vector<std::vector<std::unique_ptr<ContextState>>> bodies;
  // A subgraph's context, per value: the bytes at the address bound to an
  // output (its node's output, or a slice of it), checked before each stage
  // writes it; -1 elsewhere.
  std::vector<int64_t> room;
  // A Loop's or Scan's body: device memory for the iteration number, a true
  // condition, the body's condition output and two buffers per carried value
  // or state (one iteration reads one, writes the other); and pinned memory
  // the iteration numbers are copied from, a ring used again only after a wait.
  DeviceBuffer loop_memory;
  std::vector<int64_t> carried_offset;  // per carried value or state: its first buffer, the second right after
  std::vector<int64_t> carried_bytes;
  // Per scan output: scratch for a slice whose size data inside the body decides, copied into place after the run.
  std::vector<int64_t> slice_offset, slice_bytes;
  std::unique_ptr<std::byte, PinnedFree> loop_host;
  int64_t loop_host_next = 0;

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
// Swaps in the shape's specialized kernels that became ready; returns how many.
int swap_in_ready_kernels(PreparedShape& shape);
// Every value's device address for the next call.
void resolve_pointers(ContextState& c);
// One step's launch(es) on `stream`, at the addresses resolve_pointers found.
void launch_step(const ContextState& c, const Step& step, cudaStream_t stream);

// Data-dependent sizes (readback.cpp): finds the engine's readback points;
// gives a new context its scratch; runs one enqueue stage by stage.
void plan_readbacks(EngineState& e);
void make_readback_memory(ContextState& c);
void enqueue_data_dependent(ContextState& c, cudaStream_t stream);
// Binds data-dependent symbol `symbol`, a dim of `v` (an output of `node`), to
// `size`, checked against the plan's bound for it.
void bind_size(const plan::Plan& plan, const ir::Node& node, ir::ValueId v, const std::string& symbol, int64_t size,
               ir::SymbolBindings& resolved);
// The data-dependent symbol that is dim `i` of `v` and still unbound, if there is one.
std::optional<std::string> unbound_symbol(const ir::Network& net, ir::ValueId v, size_t i, const ir::SymbolBindings& resolved);

// Control flow (ops/control_flow.cpp): the subgraphs' engine states set up on
// the engine's device (settings, weights); a context's subgraph contexts;
// and the run of control-flow node `node` from enqueue, which binds the
// data-dependent sizes of its outputs.
void set_up_subgraphs(EngineState& e);
// Uploads the plan's weights (engine.cpp).
void upload_weights(EngineState& e);
void make_subgraph_contexts(ContextState& c);
void run_control_flow(ContextState& c, size_t node, cudaStream_t stream, const ShapeEnv& env, ir::SymbolBindings& resolved);
// Host steps (host_steps.cpp): the staging memory an engine's host steps
// need; and the run of host step `node` from enqueue (its reference kernel
// on the host, its numeric tensors copied through the staging memory), which
// binds the data-dependent sizes of its outputs.
size_t host_staging_bytes(const plan::Plan& plan, const std::vector<size_t>& host_steps);
void run_host_step(ContextState& c, size_t node, cudaStream_t stream, const ShapeEnv& env, ir::SymbolBindings& resolved);
// The context whose library handles and workspace `c`'s launches use.
inline const ContextState& library_owner(const ContextState& c) { return c.owner ? *c.owner : c; }

}  // namespace kiln::runtime
