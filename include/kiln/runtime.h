// The GPU runtime: Engine (a plan on one device: weights uploaded once,
// kernels compiled) and ExecutionContext (activation memory, shapes,
// bindings, enqueue). Several contexts per engine, each usable from its own
// thread; an engine must outlive its contexts. enqueue never allocates device
// memory and never synchronizes, except that an engine with data-dependent
// sizes (NonZero, a Range of data bounds, ...) waits in enqueue for the few
// values that decide them, and one with string tensors waits for the inputs
// of the nodes it runs on the host (see ExecutionContext::enqueue).
#pragma once

#include <cuda_runtime_api.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/export.h"
#include "kiln/plan.h"
#include "kiln/runtime_cache.h"

KILN_API_BEGIN
namespace kiln::runtime {

// The NVRTC version this build compiles with (the runtime cache's compiler identity).
int compiler_version();

// Compiles every generic kernel of `plan` for `arch` (e.g. 90 for sm_90) into
// `cache`, without a GPU, so a deployment can ship a warm cache; and for each
// set of input shapes in `shape_sets` (input name -> dims; each set inside
// one of the plan's profiles), the kernels specialized for those shapes.
// Returns the number of kernels compiled or found.
// `progress` as RuntimeConfig::progress.
using InputShapes = std::map<std::string, std::vector<int64_t>, std::less<>>;
int warm_cache(const plan::Plan& plan, int arch, RuntimeCache& cache,
               const std::function<void(const std::string&)>& progress = {},
               const std::vector<InputShapes>& shape_sets = {});

// Whether the GPU runtime can run each node of `plan` (in network order),
// decided on the host as Engine::create decides it, without any GPU, driver
// call or CUDA device. Engine::create refuses a plan with an unsupported node;
// the CPU reference interpreter runs any plan.
struct NodeSupport {
  std::string node;
  ir::OpKind op = ir::OpKind::kIdentity;
  bool supported = true;
  std::string reason;  // why not, when not supported
  // A supported node the engine runs on the host between its launches (a
  // node on string tensors): "runs on the host inside the GPU engine (...)";
  // empty for nodes that run on the GPU.
  std::string host_note;
};
std::vector<NodeSupport> gpu_support(const plan::Plan& plan);

// What the GPU runtime does with an op kind (`kiln ops`, docs/ops.md): runs
// it (`detail`: the conditions), leaves it to `kiln build` to lower into ops
// it runs (`detail`: into what), runs it on the host inside the GPU engine
// with the reference kernel (`detail`: why), or has no kernel for it
// (`detail`: why). Any node that reads or writes a string tensor runs on the
// host, whatever its op.
struct GpuLowering {
  enum Kind { kKernel, kByBuilder, kHost, kNone };
  Kind kind = kNone;
  std::string detail;
};
GpuLowering gpu_lowering(ir::OpKind op);

// True when a CUDA device can be used; otherwise `reason` says why.
bool cuda_available(std::string* reason = nullptr);

// After a device error that poisons the CUDA context (an illegal address, say),
// resets the device so a test runner can go on. Every engine and context of
// this process must be destroyed first.
void reset_device_after_error();

// What runs at a shape seen for the first time: `lazy` launches the generic
// kernels at once and compiles shape-specialized ones in the background,
// swapping them in when ready; `eager` compiles them before the first call at
// that shape returns; `none` always runs the generic kernels.
enum class KernelSpecialization { kLazy, kEager, kNone };
std::string_view kernel_specialization_name(KernelSpecialization s);
std::optional<KernelSpecialization> parse_kernel_specialization(std::string_view name);

// Native CUDA graphs: `whole_graph_capture` lets each context capture its
// launches per input-shape key (after `graph_warmup_calls` direct calls),
// replay them, and repair them when input/output addresses change or
// specialized kernels arrive. `disabled` launches every kernel each call.
enum class CudaGraphStrategy { kDisabled, kWholeGraphCapture };
std::string_view cuda_graph_strategy_name(CudaGraphStrategy s);
std::optional<CudaGraphStrategy> parse_cuda_graph_strategy(std::string_view name);

struct RuntimeConfig {
  int device = -1;           // -1: the current device
  int compile_threads = 0;   // 0: one per hardware thread, at most 16
  KernelSpecialization dynamic_shapes_kernel_specialization_strategy = KernelSpecialization::kLazy;
  int specialization_threads = 2;           // background compilers for `lazy`
  size_t max_specialized_kernels = 1024;    // specialized kernels kept (LRU); 0: none
  size_t shapes_per_context = 16;           // prepared shapes a context keeps (LRU)
  // create_context runs the network once at profile 0's opt shapes on zeroed
  // scratch memory (then freed), so library state and kernel modules are
  // loaded before the first real call instead of during it; selecting another
  // profile does the same at its opt shapes.
  bool warm_up_contexts = true;
  CudaGraphStrategy cuda_graph_strategy = CudaGraphStrategy::kDisabled;
  int graph_warmup_calls = 1;       // direct calls at a shape before it is captured
  // Executable graphs kept per shape, one per set of input/output addresses
  // (callers that keep their last result alive alternate between two output
  // buffers); beyond it the least recently used one is repaired in place.
  size_t graphs_per_shape = 4;
  // Repairs for new addresses rewrite only the graph nodes' arguments that
  // hold them, once a repair by capture has shown where they sit; false:
  // every repair captures again.
  bool patch_graph_arguments = true;
  bool strict_cuda_graphs = false;  // throw instead of falling back to direct launches
  // Called with progress lines while kernels compile, from the compiling
  // threads (several at once); unset: the lines go to the log as info
  // (kiln/logging.h).
  std::function<void(const std::string&)> progress;
  // Compiled kernels are looked up here first and added after compiling; shared
  // by engines. Null: no cache.
  std::shared_ptr<RuntimeCache> cache;
};

class ExecutionContext;
struct EngineState;

class Engine {
 public:
  // Uploads the weights and compiles every kernel for the device's architecture.
  static std::shared_ptr<Engine> create(plan::Plan plan, const RuntimeConfig& config = {});
  ~Engine();
  std::unique_ptr<ExecutionContext> create_context();
  const plan::Plan& plan() const;
  const RuntimeConfig& config() const;
  bool has_dynamic_inputs() const;  // some input has a symbolic dim
  int profile_count() const;        // the plan's optimization profiles (at least 1)
  int device() const;
  int kernel_count() const;         // distinct compiled modules
  int cached_kernel_count() const;  // of those, taken from the runtime cache
  int cached_specialized_kernel_count() const;  // specialized kernels taken from the runtime cache so far
  // Specialized kernel modules loaded now: at most max_specialized_kernels plus
  // those the contexts' prepared shapes still use.
  int64_t loaded_specialized_kernel_count() const;

 private:
  explicit Engine(std::unique_ptr<EngineState> state);
  std::unique_ptr<EngineState> state_;
  friend class ExecutionContext;
};

struct ContextState;

class ExecutionContext {
 public:
  ~ExecutionContext();
  // The optimization profile whose input shapes this context runs: 0 when
  // created. set_input_shape and prepare refuse shapes outside its ranges
  // (kShapeError naming the input, dim, symbol, the profile and its range, and
  // another profile that accepts the shape, if one does).
  //
  // Selecting another profile keeps every prepared shape and the input shapes
  // it accepts (the others are unset: set them again) and, with
  // RuntimeConfig::warm_up_contexts, warms the context up at its opt shapes
  // unless they are prepared already. That may allocate and synchronize, so
  // while `stream` (the stream the caller enqueues this context on) is being
  // captured it throws kInvalidArgument, changing nothing. A profile outside
  // [0, Engine::profile_count()) is kInvalidArgument.
  void set_optimization_profile(int profile, cudaStream_t stream);
  int optimization_profile() const;
  // Dims of a network input; must fit its constant dims and the ranges of
  // the context's optimization profile.
  void set_input_shape(std::string_view input, const std::vector<int64_t>& dims);
  // Dims of any input or output for the shapes set so far. A size that
  // depends on data is known once enqueue has run (kInvalidArgument before):
  // the size of the last enqueue.
  std::vector<int64_t> tensor_shape(std::string_view name) const;
  // The largest dims a tensor may take at the shapes set so far: its data-
  // dependent sizes at the bounds `kiln build` planned (the size to allocate
  // for such an output); tensor_shape's dims for every other tensor.
  std::vector<int64_t> max_tensor_shape(std::string_view name) const;
  // Device memory of an input or output (on the engine's device). A string
  // tensor has no device form: its address is host memory holding a
  // std::string per element (`std::string[elements]`, row-major), which
  // enqueue reads (an input) or assigns (an output; tensor_shape's elements,
  // or max_tensor_shape's when its size depends on data) while it runs.
  // Device memory for a string tensor, or host memory for a numeric one, is
  // kInvalidArgument naming the tensor.
  void set_tensor_address(std::string_view name, void* address);
  // Queues the whole network on `stream`. Never allocates device memory and
  // never waits for the GPU, with one exception: when the engine has
  // data-dependent sizes, enqueue queues the launches up to each node that
  // decides one, copies the values that decide it (NonZero's count, a Range's
  // bounds, TopK's K, a shape tensor; a few bytes, into pinned memory made
  // with the context) and waits for that copy, then sizes and queues the rest.
  // A size above the bound the plan holds for it throws kShapeError naming
  // the tensor (nothing is written past the bound). Such engines run generic
  // kernels, never CUDA graphs (a fallback "data-dependent shapes" in
  // graph_stats, or an error with strict_cuda_graphs), and refuse a caller's
  // capture (kInvalidArgument, before touching the stream).
  //
  // Nodes that read or write string tensors (StringConcat, RegexFullMatch,
  // a Cast to string, an Equal or LabelEncoder on strings, ...) run on the
  // host, as steps of the same staged enqueue: at such a node enqueue waits
  // for the stream, copies the node's numeric inputs to pinned host memory
  // made with the context, runs the CPU reference kernel, and queues the
  // copies of its numeric outputs back to device memory. String tensors the
  // network keeps inside live in host memory the context holds; string inputs
  // and outputs are the caller's (set_tensor_address), and a string output is
  // written by the time enqueue returns. Such engines are not stream-
  // capturable either (a fallback "host steps" in graph_stats).
  //
  // Inside a capture of the caller's (`stream` is being captured), the launches
  // are recorded into that capture, and the shape must already be prepared
  // here (by an earlier enqueue or by prepare()): otherwise enqueue throws
  // kInvalidArgument before touching the stream, so the capture stays valid.
  // Specialized kernels recorded into a caller's capture stay loaded while the
  // context lives, so that graph may be replayed any time; see
  // release_captured_kernels().
  void enqueue(cudaStream_t stream);

  // Prepares the launches of each set of input shapes ahead of time (host work
  // and, per the kernel specialization strategy, specialized kernels), so a
  // later enqueue at those shapes, e.g. inside the caller's capture, has
  // nothing to set up. `wait_for_specialized` also waits (lazy) until every
  // specialized kernel of those shapes is ready. The shapes set by
  // set_input_shape are unchanged. Throws kInvalidArgument when the sets are
  // more than RuntimeConfig::shapes_per_context (the context would forget the
  // first ones again).
  void prepare(const std::vector<InputShapes>& shape_sets, bool wait_for_specialized = false);
  // Prepares the input shapes set now.
  void prepare();
  // Declares that no graph the caller captured around this context's enqueues
  // will be launched again once the work queued on `stream` so far is done
  // (destroy those graphs first). The specialized kernels they pinned are then
  // unloaded when nothing else uses them.
  void release_captured_kernels(cudaStream_t stream);
  // Specialized kernels pinned now by the caller's captures.
  size_t captured_kernel_count() const;

  // The kernel specialization strategy for shapes this context prepares from
  // now on (the engine's unless changed here).
  void set_kernel_specialization(KernelSpecialization strategy);
  KernelSpecialization kernel_specialization() const;

  // Resolve-once binding for per-call paths (language bindings, modules): a
  // network input's or output's index (inputs first, in network order, then
  // outputs), then shapes and addresses by index. Unchanged dims and
  // addresses cost a comparison: no name lookup, no allocation, no CUDA call.
  int io_index(std::string_view name) const;
  int io_count() const;
  bool io_is_input(int io_index) const;
  void set_input_shape(int io_index, std::span<const int64_t> dims);
  void set_tensor_address(int io_index, void* address);
  // Dims of an input or output for the shapes set so far (prepares them; an
  // engine with data-dependent sizes is prepared by enqueue instead).
  const std::vector<int64_t>& tensor_shape(int io_index);

  // Per prepared shape (most recent first): how many kernel launches run the
  // generic kernel, a specialized one, or wait for one (lazy).
  struct ShapeStats {
    std::string shape;  // "x:1x16x512,mask:1x16"
    int generic = 0, specialized = 0, pending = 0;
    double prepare_ms = 0;  // host time spent preparing the shape's launches (eager: compiles included)
    // No launch waits for a specialized kernel any more: the kernels this
    // shape runs stay the same from now on (its graphs are final).
    bool complete = false;
    // Per kernel launch, in order: the node and whether it runs a specialized kernel.
    std::vector<std::pair<std::string, bool>> kernels;
  };
  std::vector<ShapeStats> specialization_stats() const;

  // Native CUDA graphs of this context (the engine's strategy unless changed
  // here; a change applies from the next enqueue and rebuilds nothing).
  void set_cuda_graph_strategy(CudaGraphStrategy strategy);
  CudaGraphStrategy cuda_graph_strategy() const;
  struct GraphStats {
    int64_t calls = 0;                // enqueues
    int64_t direct = 0;               // ran without a graph (warm-up, disabled, fallbacks)
    int64_t into_caller_capture = 0;  // recorded into the caller's own capture
    int64_t captures = 0, instantiations = 0, updates = 0;  // updates: executable graphs repaired in place
    int64_t replays = 0;              // graph launches without repair
    int64_t pointer_repairs = 0;      // graphs repaired for new input/output addresses
    int64_t pointer_patches = 0;      // of those, repaired by rewriting only the nodes' arguments (no capture)
    int64_t kernel_swaps = 0;         // graphs repaired to take newly specialized kernels
    std::map<std::string, int64_t> fallbacks;  // direct calls under whole_graph_capture, by reason
    int64_t graphs = 0;               // executable graphs held now
    int64_t capture_failures = 0;     // captures that failed (each retried later, after a back-off)
    // Graph launches for calls on the legacy default stream (which cannot be
    // captured): on the context's own stream, joined to the caller's by events.
    int64_t on_context_stream = 0;
  };
  GraphStats graph_stats() const;
  // Times each launch of the current input shapes on the GPU: the launches
  // run directly (no graph) and back to back (queued behind a host wait, so
  // no launch gap is timed), `iterations` times; medians per step, in launch
  // order. Synchronizes `stream`; not inside a capture. For profiling, not
  // for serving.
  struct StepTime {
    std::string node;  // the plan's node
    std::string op;    // its op ("FusedElementwise", "FusedMatMul", ...)
    std::string runs;  // "generated", "generated, specialized", "cuBLASLt" or "cuDNN"
    double gpu_us = 0;
    int64_t bytes = 0;  // the node's inputs and outputs, weights included, at these shapes
    double flops = 0;   // products of matmuls, convolutions and attention (2 per multiply-add); 0 elsewhere
  };
  std::vector<StepTime> profile(cudaStream_t stream, int iterations);

  // Debugging (kiln debug --compare-layers): runs the launches of the current
  // input shapes directly (no graph), one plan node at a time, and once a
  // node's work is done (`stream` synchronized) calls `after_node` with its
  // outputs in device memory, in network order, every node included (views
  // and nodes without launches too). The arena reuses memory, so a later node
  // may overwrite them: copy them there (read_node_output) or not at all.
  // The callback may also change them; later nodes read what it left.
  // Synchronizes; not inside a capture (kInvalidArgument). Not for serving.
  struct NodeOutput {
    std::string name;  // the plan's tensor
    DType dtype = DType::kFloat32;
    std::vector<int64_t> dims;
    void* address = nullptr;  // device memory; null where the tensor has no storage (a dropped optional output)
  };
  struct NodeOutputs {
    size_t node = 0;  // index in plan().network.nodes()
    std::vector<NodeOutput> outputs;
  };
  void run_node_by_node(cudaStream_t stream, const std::function<void(const NodeOutputs&)>& after_node);

  // True when an enqueue on `stream` now could be recorded by an outer capture:
  // not the legacy default stream, every input shape set, every input and
  // output bound, no data-dependent size and no node run on the host
  // (enqueue waits for those).
  bool is_stream_capturable(cudaStream_t stream) const;
  // Why is_stream_capturable is false, naming the stream, input, output or
  // data-dependent tensor at fault; empty when it is true.
  std::string capture_obstacle(cudaStream_t stream) const;

 private:
  friend class Engine;
  explicit ExecutionContext(std::unique_ptr<ContextState> state);
  void warm_up();
  std::unique_ptr<ContextState> state_;
};

}  // namespace kiln::runtime

namespace kiln::runtime {

// Device memory for a context's inputs and outputs, for tools and tests (not
// for latency-critical code): sets the input shapes, allocates, uploads the
// host inputs, fills the outputs with NaN bytes (so unwritten outputs show)
// and binds everything to the context, which may then enqueue any number of
// times while this object lives. String inputs and outputs are bound as
// host arrays of std::string this object holds.
class DeviceIo {
 public:
  DeviceIo(ExecutionContext& context, const Engine& engine, const std::map<std::string, ir::TensorData>& inputs);
  ~DeviceIo();
  // Sets this object's input shapes and addresses on the context again (after
  // another DeviceIo bound its own).
  void bind();
  // Waits for `stream` and copies the outputs back, in network order.
  std::vector<ir::TensorData> download(cudaStream_t stream);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// A host copy of one output a run_node_by_node callback was given (waits for
// the copy; an output without storage is an error naming it).
ir::TensorData read_node_output(const ExecutionContext::NodeOutput& output);
// run_node_by_node, keeping a host copy of every tensor a node writes, by
// plan tensor name; `before_copy`, when set, runs first for each node (a
// test alters a node's output there to see the comparison find it).
std::map<std::string, ir::TensorData> read_every_tensor(
    ExecutionContext& context, cudaStream_t stream,
    const std::function<void(const ExecutionContext::NodeOutputs&)>& before_copy = {});

// DeviceIo + one enqueue on `stream` + download.
std::vector<ir::TensorData> run_with_host_tensors(ExecutionContext& context, const Engine& engine,
                                                  const std::map<std::string, ir::TensorData>& inputs,
                                                  cudaStream_t stream = nullptr);

}  // namespace kiln::runtime
KILN_API_END
