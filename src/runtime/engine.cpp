#include <algorithm>
#include <chrono>
#include <list>
#include <cstring>
#include <map>
#include <thread>

#include "cuda_util.h"

#include <cudnn.h>
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/runtime.h"
#include "graphs/graph_policy.h"
#include "graphs/native_graph.h"
#include "jit/nvrtc.h"
#include "ops.h"

namespace kiln::runtime {

namespace {
constexpr size_t kWorkspaceBytes = 32 << 20;  // cuBLASLt and cuDNN workspace per context
}  // namespace

bool cuda_available(std::string* reason) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    if (reason) *reason = e != cudaSuccess ? str("no usable CUDA device (", cudaGetErrorName(e), ": ", cudaGetErrorString(e), ")")
                                           : std::string("no CUDA device");
    cudaGetLastError();
    return false;
  }
  return true;
}

int compiler_version() { return jit::nvrtc_version(); }

namespace {

// One op per node, registering their kernels; everything unsupported in one error.
std::vector<std::unique_ptr<Op>> make_ops(const plan::Plan& plan, KernelStore& store) {
  std::vector<std::unique_ptr<Op>> ops;
  std::map<std::string, int> unsupported;
  for (const ir::Node& node : plan.network.nodes()) {
    std::string reason;
    auto op = make_op(plan, node, store, reason);
    if (!op) unsupported[str(ir::op_name(node.op), " (", reason, ")")]++;
    ops.push_back(std::move(op));
  }
  if (!unsupported.empty()) {
    std::string list;
    for (auto& [what, count] : unsupported) list += str(list.empty() ? "" : ", ", what, " x", count);
    fail(ErrorCode::kUnsupported, "the GPU runtime cannot run: ", list);
  }
  return ops;
}

}  // namespace


void reset_device_after_error() {
  cudaDeviceReset();
  cudaGetLastError();
}

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
};

Engine::Engine(std::unique_ptr<EngineState> state) : state_(std::move(state)) {}
Engine::~Engine() = default;
const plan::Plan& Engine::plan() const { return state_->plan; }
const RuntimeConfig& Engine::config() const { return state_->config; }
bool Engine::has_dynamic_inputs() const {
  const ir::Network& net = state_->plan.network;
  return std::any_of(net.inputs().begin(), net.inputs().end(),
                     [&](ir::ValueId id) { return !ir::shape_is_constant(net.value(id).shape); });
}
int Engine::device() const { return state_->device; }
int Engine::kernel_count() const { return state_->store.module_count(); }
int Engine::cached_kernel_count() const { return state_->store.cache_hits(); }
int Engine::cached_specialized_kernel_count() const { return state_->store.specialized_cache_hits(); }
int64_t Engine::loaded_specialized_kernel_count() const { return state_->store.loaded_specialized(); }

std::shared_ptr<Engine> Engine::create(plan::Plan plan, const RuntimeConfig& config) {
  std::string why;
  if (!cuda_available(&why)) fail(ErrorCode::kDevice, why);
  auto s = std::make_unique<EngineState>();
  s->plan = std::move(plan);
  if (config.device >= 0) KILN_CUDA(cudaSetDevice(config.device), "selecting the device");
  KILN_CUDA(cudaGetDevice(&s->device), "");
  cudaDeviceProp prop{};
  KILN_CUDA(cudaGetDeviceProperties(&prop, s->device), "");
  s->sm_count = prop.multiProcessorCount;
  s->arch = prop.major * 10 + prop.minor;
  const ir::Network& net = s->plan.network;

  s->ops = make_ops(s->plan, s->store);

  // Weights: one allocation, 256-byte aligned slots, uploaded once.
  s->weight_offset.assign(net.values().size(), -1);
  size_t total = 0;
  for (size_t v = 0; v < net.values().size(); ++v)
    if (net.values()[v].weight) {
      s->weight_offset[v] = int64_t(total);
      total += (net.values()[v].weight->data.size() + 255) / 256 * 256;
    }
  s->weights = DeviceBuffer(total, "weights");
  for (size_t v = 0; v < net.values().size(); ++v)
    if (net.values()[v].weight && net.values()[v].weight->data.size())
      KILN_CUDA(cudaMemcpy(s->weights.get() + s->weight_offset[v], net.values()[v].weight->data.data(),
                           net.values()[v].weight->data.size(), cudaMemcpyHostToDevice),
                "uploading weight " + net.values()[v].name);

  int threads = config.compile_threads > 0 ? config.compile_threads
                                           : std::clamp<int>(int(std::thread::hardware_concurrency()), 1, 16);
  s->store.compile_all(s->arch, threads, config.progress, config.cache.get());
  s->config = config;
  // lazy compiles in the background on a few threads; eager on as many as
  // compile the generic kernels, while the first call at a shape waits.
  if (config.dynamic_shapes_kernel_specialization_strategy == KernelSpecialization::kLazy)
    s->store.start_specializer(s->device, std::max(1, config.specialization_threads), config.max_specialized_kernels);
  if (config.dynamic_shapes_kernel_specialization_strategy == KernelSpecialization::kEager)
    s->store.start_specializer(s->device, threads, config.max_specialized_kernels);
  return std::shared_ptr<Engine>(new Engine(std::move(s)));
}

// The launches of one set of input shapes, prepared once (host work only) and kept.
struct PreparedShape {
  std::string key;
  ShapeEnv shapes;
  std::vector<Step> steps;
  size_t pending = 0;  // launches still waiting for a specialized kernel
  double prepare_ms = 0;
  int calls = 0;       // enqueues at this shape
  // Native CUDA graph of this shape, the input/output addresses it was
  // captured with, whether kernels were swapped since, and why capturing failed.
  graphs::NativeGraph graph;
  std::vector<void*> graph_pointers;
  bool graph_stale_kernels = false;
  std::string capture_failure;
};

struct ContextState {
  const EngineState* engine;
  DeviceBuffer arena, workspace;
  cublasLtHandle_t lt = nullptr;
  cudnnHandle_t cudnn = nullptr;  // made only when the plan has cuDNN work
  std::map<std::string, std::vector<int64_t>, std::less<>> input_dims;
  std::vector<void*> bound;  // per value id: user pointer for inputs and outputs
  std::vector<bool> io;      // per value id: a network input or output (must be bound)
  std::list<PreparedShape> shapes;  // most recently used first
  PreparedShape* current = nullptr;
  std::vector<void*> pointers;  // per value id, resolved at enqueue
  // Specialized kernels of shapes this context forgot: held until an event
  // recorded after the context's later work has passed, so no module is
  // unloaded under a kernel still queued or running.
  std::vector<std::shared_ptr<Specialization>> retiring, fenced;
  cudaEvent_t fence = nullptr;
  bool fence_pending = false;
  CudaGraphStrategy graph_strategy = CudaGraphStrategy::kDisabled;
  ExecutionContext::GraphStats stats;
  graphs::GraphCounters counters;

  ~ContextState() {
    if (lt) cublasLtDestroy(lt);
    if (cudnn) cudnnDestroy(cudnn);
    if (fence) cudaEventDestroy(fence);
  }
};

std::unique_ptr<ExecutionContext> Engine::create_context() {
  auto c = std::make_unique<ContextState>();
  c->engine = state_.get();
  c->graph_strategy = state_->config.cuda_graph_strategy;
  KILN_CUDA(cudaSetDevice(state_->device), "");
  c->arena = DeviceBuffer(size_t(state_->plan.arena_bytes), "the activation arena");
  c->workspace = DeviceBuffer(kWorkspaceBytes, "the cuBLASLt workspace");
  KILN_CUBLAS(cublasLtCreate(&c->lt), "creating the cuBLASLt handle");
  KILN_CUDA(cudaEventCreateWithFlags(&c->fence, cudaEventDisableTiming), "creating the context's event");
  bool needs_cudnn = std::any_of(state_->plan.network.nodes().begin(), state_->plan.network.nodes().end(),
                                 [](const ir::Node& n) { return n.op == ir::OpKind::kConv; });
  if (needs_cudnn && cudnnCreate(&c->cudnn) != CUDNN_STATUS_SUCCESS)
    fail(ErrorCode::kDevice, "cannot create the cuDNN handle");
  size_t nv = state_->plan.network.values().size();
  c->bound.assign(nv, nullptr);
  c->pointers.assign(nv, nullptr);
  c->io.assign(nv, false);
  for (ir::ValueId v : state_->plan.network.inputs()) c->io[size_t(v)] = true;
  for (ir::ValueId v : state_->plan.network.outputs()) c->io[size_t(v)] = true;
  for (ir::ValueId id : state_->plan.network.inputs()) {
    const ir::Value& v = state_->plan.network.value(id);
    if (ir::shape_is_constant(v.shape)) c->input_dims[v.name] = ir::shape_constants(v.shape);
  }
  auto context = std::unique_ptr<ExecutionContext>(new ExecutionContext(std::move(c)));
  if (state_->config.warm_up_contexts) context->warm_up();
  return context;
}

void ExecutionContext::warm_up() {
  ContextState& c = *state_;
  const ir::Network& net = c.engine->plan.network;
  ir::SymbolBindings opt;
  for (auto& [symbol, range] : net.dim_ranges()) opt[symbol] = range.opt;
  std::map<std::string, std::vector<int64_t>, std::less<>> dims;
  for (ir::ValueId id : net.inputs()) {
    std::vector<int64_t> d;
    for (const ir::Dim& dim : net.value(id).shape) {
      auto x = dim.evaluate(opt);
      if (!x) return;  // a dim without a profile: nothing to warm up with
      d.push_back(*x);
    }
    dims[net.value(id).name] = d;
  }
  auto input_dims = c.input_dims;
  std::vector<void*> bound = c.bound;
  auto restore = [&] {  // the caller sees the context as created; the opt shape stays prepared
    c.bound = bound;
    c.input_dims = input_dims;
    c.current = nullptr;
    c.stats = {};
  };
  for (auto& [name, d] : dims) set_input_shape(name, d);
  std::vector<DeviceBuffer> scratch;
  std::vector<ir::ValueId> io(net.inputs().begin(), net.inputs().end());
  io.insert(io.end(), net.outputs().begin(), net.outputs().end());
  for (ir::ValueId id : io) {
    if (c.bound[size_t(id)] && std::find(net.inputs().begin(), net.inputs().end(), id) == net.inputs().end()) continue;
    auto d = tensor_shape(net.value(id).name);
    size_t bytes = std::max<size_t>(size_t(ir::checked_numel(d)) * dtype_size(net.value(id).dtype), 256);
    scratch.emplace_back(bytes, "warm-up scratch for " + net.value(id).name);
    KILN_CUDA(cudaMemset(scratch.back().get(), 0, bytes), "");  // zeros: valid indices for gathers
    c.bound[size_t(id)] = scratch.back().get();
  }
  cudaStream_t stream;
  KILN_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "creating the warm-up stream");
  try {
    enqueue(stream);
  } catch (...) {
    cudaStreamSynchronize(stream);
    cudaStreamDestroy(stream);
    restore();
    throw;
  }
  cudaError_t e = cudaStreamSynchronize(stream);
  cudaStreamDestroy(stream);
  restore();
  KILN_CUDA(e, "warming the context up");
}

ExecutionContext::ExecutionContext(std::unique_ptr<ContextState> state) : state_(std::move(state)) {}
ExecutionContext::~ExecutionContext() = default;

namespace {

// Checks dims for a network input: its rank, constant dims and symbol ranges.
void validate_input_shape(const ir::Network& net, std::string_view name, const std::vector<int64_t>& dims) {
  auto id = net.find_value(name);
  if (!id || !net.value(*id).is_input) fail(ErrorCode::kInvalidArgument, "'", name, "' is not an input of the network");
  const ir::Value& v = net.value(*id);
  if (dims.size() != v.shape.size())
    fail(ErrorCode::kShapeError, "input '", name, "' has rank ", v.shape.size(), " ", ir::shape_to_string(v.shape), "; got ",
         dims.size(), " dims");
  for (size_t i = 0; i < dims.size(); ++i) {
    if (v.shape[i].is_constant() && v.shape[i].constant() != dims[i])
      fail(ErrorCode::kShapeError, "input '", name, "' dim ", i, " must be ", v.shape[i].constant(), "; got ", dims[i]);
    std::set<std::string> symbols;
    v.shape[i].collect_symbols(symbols);
    for (auto& s : symbols) {
      auto r = net.dim_ranges().find(s);
      if (r != net.dim_ranges().end() && (dims[i] < r->second.min || dims[i] > r->second.max))
        fail(ErrorCode::kShapeError, "input '", name, "' dim ", i, " ('", s, "') is ", dims[i], ", outside the profile range [",
             r->second.min, ", ", r->second.max, "]");
    }
  }
}

}  // namespace

void ExecutionContext::set_input_shape(std::string_view name, const std::vector<int64_t>& dims) {
  validate_input_shape(state_->engine->plan.network, name, dims);
  auto& slot = state_->input_dims[std::string(name)];
  if (slot != dims) {
    slot = dims;
    state_->current = nullptr;  // the next enqueue finds or prepares this shape
  }
}

namespace {

// Binds symbols from the input dims and evaluates every value's dims.
ShapeEnv evaluate_shapes(const ir::Network& net, const std::map<std::string, std::vector<int64_t>, std::less<>>& input_dims) {
  ShapeEnv env;
  for (ir::ValueId id : net.inputs()) {
    const ir::Value& v = net.value(id);
    auto it = input_dims.find(v.name);
    if (it == input_dims.end()) fail(ErrorCode::kInvalidArgument, "the shape of input '", v.name, "' is not set");
    for (size_t i = 0; i < v.shape.size(); ++i) {
      std::set<std::string> symbols;
      v.shape[i].collect_symbols(symbols);
      if (symbols.size() == 1 && v.shape[i] == ir::Dim::symbol(*symbols.begin())) {
        auto [slot, fresh] = env.bindings.emplace(*symbols.begin(), it->second[i]);
        if (!fresh && slot->second != it->second[i])
          fail(ErrorCode::kShapeError, "input '", v.name, "' dim ", i, " ('", *symbols.begin(), "') is ", it->second[i],
               " but another input set it to ", slot->second);
      }
    }
  }
  env.dims.resize(net.values().size());
  for (size_t i = 0; i < net.values().size(); ++i) {
    const ir::Value& v = net.values()[i];
    for (const ir::Dim& d : v.shape) {
      auto x = d.evaluate(env.bindings);
      if (!x) fail(ErrorCode::kUnsupported, "tensor '", v.name, "' has a size (", d.to_string(), ") that depends on input data");
      if (*x < 0) fail(ErrorCode::kShapeError, "tensor '", v.name, "' would have negative dim ", *x, " for these input shapes");
      env.dims[i].push_back(*x);
    }
  }
  return env;
}

}  // namespace

std::vector<int64_t> ExecutionContext::tensor_shape(std::string_view name) const {
  const ir::Network& net = state_->engine->plan.network;
  auto id = net.find_value(name);
  if (!id) fail(ErrorCode::kInvalidArgument, "'", name, "' is not a tensor of the network");
  if (!state_->current) return evaluate_shapes(net, state_->input_dims).dims[size_t(*id)];
  return state_->current->shapes.dims[size_t(*id)];
}

void ExecutionContext::set_tensor_address(std::string_view name, void* address) {
  const ir::Network& net = state_->engine->plan.network;
  auto id = net.find_value(name);
  bool io = id && (net.value(*id).is_input ||
                   std::find(net.outputs().begin(), net.outputs().end(), *id) != net.outputs().end());
  if (!io) fail(ErrorCode::kInvalidArgument, "'", name, "' is not an input or output of the network");
  if (!address) fail(ErrorCode::kInvalidArgument, "the address for '", name, "' is null");
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, address) != cudaSuccess || attr.type == cudaMemoryTypeUnregistered ||
      attr.type == cudaMemoryTypeHost) {
    cudaGetLastError();
    fail(ErrorCode::kInvalidArgument, "the address for '", name, "' is not device memory");
  }
  if (attr.device != state_->engine->device)
    fail(ErrorCode::kInvalidArgument, "the address for '", name, "' is on device ", attr.device, "; the engine is on device ",
         state_->engine->device);
  state_->bound[size_t(*id)] = address;
}

namespace {

std::string shape_key(const std::map<std::string, std::vector<int64_t>, std::less<>>& dims) {
  std::string key;
  for (auto& [name, d] : dims) {
    key += (key.empty() ? "" : ",") + name + ":";
    for (size_t i = 0; i < d.size(); ++i) key += (i ? "x" : "") + std::to_string(d[i]);
  }
  return key;
}

// Finds the prepared launches for the current input shapes, or prepares them
// (host work only: shapes, parameters, library plans, specialization requests).
PreparedShape& prepared_shape(ContextState& c) {
  const EngineState& e = *c.engine;
  std::string key = shape_key(c.input_dims);
  for (auto it = c.shapes.begin(); it != c.shapes.end(); ++it)
    if (it->key == key) {
      c.shapes.splice(c.shapes.begin(), c.shapes, it);  // most recently used first
      return c.shapes.front();
    }
  auto started = std::chrono::steady_clock::now();
  PreparedShape p;
  p.key = key;
  p.shapes = evaluate_shapes(e.plan.network, c.input_dims);
  KernelSpecialization strategy = e.config.dynamic_shapes_kernel_specialization_strategy;
  PrepareContext ctx{p.shapes, p.steps, c.lt, c.cudnn, c.workspace.bytes(), e.sm_count};
  ctx.cache = e.config.cache.get();
  ctx.arch = e.arch;
  for (const auto& op : e.ops) op->prepare(ctx);
  for (Step& step : p.steps) {
    auto* k = std::get_if<KernelLaunch>(&step);
    if (k && k->specializable && k->handle >= 0 && strategy != KernelSpecialization::kNone)
      k->special = e.store.specialize(k->handle, k->params);  // null once the bound is reached
  }
  for (Step& step : p.steps) {
    auto* k = std::get_if<KernelLaunch>(&step);
    if (!k || !k->special) continue;
    if (strategy == KernelSpecialization::kEager)  // the pool compiles them all at once
      while (k->special->state.load(std::memory_order_acquire) == Specialization::kPending)
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    int state = k->special->state.load(std::memory_order_acquire);
    if (state == Specialization::kFailed) {
      k->special.reset();
    } else if (state == Specialization::kReady) {
      k->kernel = k->special->kernel;
      k->specialized = true;
    } else {
      ++p.pending;
    }
  }
  p.prepare_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  c.shapes.push_front(std::move(p));
  if (c.shapes.size() > std::max<size_t>(1, e.config.shapes_per_context)) {
    for (Step& step : c.shapes.back().steps)
      if (auto* k = std::get_if<KernelLaunch>(&step); k && k->special) c.retiring.push_back(std::move(k->special));
    c.shapes.pop_back();
  }
  return c.shapes.front();
}

}  // namespace

namespace {

bool stream_is_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &status) != cudaSuccess) {  // the legacy stream while another captures
    cudaGetLastError();
    return true;
  }
  return status != cudaStreamCaptureStatusNone;
}

// Outside captures only: lets go of forgotten specialized kernels once the
// context's fence has passed, and unloads modules nothing holds any more.
void release_retired_kernels(ContextState& c, cudaStream_t stream, bool after_work) {
  const KernelStore& store = c.engine->store;
  if (!after_work) {
    if (c.fence_pending && cudaEventQuery(c.fence) == cudaSuccess) {
      c.fenced.clear();
      c.fence_pending = false;
    }
    if (store.has_retired()) store.unload_retired();
  } else if (!c.retiring.empty() && !c.fence_pending) {
    KILN_CUDA(cudaEventRecord(c.fence, stream), "recording the context's event");
    c.fenced = std::move(c.retiring);
    c.retiring.clear();
    c.fence_pending = true;
  }
}

}  // namespace

namespace {

// Swaps in specialized kernels that became ready (lazy: one atomic load each);
// returns how many launches changed kernel.
int swap_in_ready_kernels(PreparedShape& shape) {
  int swapped = 0;
  for (Step& step : shape.steps) {
    auto* k = std::get_if<KernelLaunch>(&step);
    if (!k || !k->special || k->specialized) continue;
    int state = k->special->state.load(std::memory_order_acquire);
    if (state == Specialization::kPending) continue;
    if (state == Specialization::kReady) {
      k->kernel = k->special->kernel;
      k->specialized = true;
      ++swapped;
    } else {
      k->special.reset();
    }
    --shape.pending;
  }
  return swapped;
}

// Every value's device address for this call: bound inputs and outputs,
// weights, activations in the arena.
void resolve_pointers(ContextState& c) {
  const EngineState& e = *c.engine;
  const ir::Network& net = e.plan.network;
  for (size_t v = 0; v < net.values().size(); ++v) {
    if (c.bound[v]) c.pointers[v] = c.bound[v];
    else if (e.weight_offset[v] >= 0) c.pointers[v] = e.weights.get() + e.weight_offset[v];
    else if (e.plan.arena_offset[v] >= 0) c.pointers[v] = c.arena.get() + e.plan.arena_offset[v];
    else c.pointers[v] = nullptr;
    if (!c.pointers[v] && c.io[v])
      fail(ErrorCode::kInvalidArgument, "'", net.values()[v].name, "' has no address: call set_tensor_address first");
  }
}

// Launches the shape's steps on `stream` (directly, or into a capture).
void launch_steps(const ContextState& c, const PreparedShape& shape, cudaStream_t stream) {
  const ir::Network& net = c.engine->plan.network;
  auto ptr = [&](const PtrRef& r, const ir::Node* node) -> void* {
    void* base = c.pointers[size_t(r.value)];
    if (!base) fail(ErrorCode::kInternal, "node '", node->name, "': tensor '", net.value(r.value).name, "' has no storage");
    return static_cast<std::byte*>(base) + r.offset;
  };
  for (const Step& step : shape.steps) {
    if (auto* k = std::get_if<KernelLaunch>(&step)) {
      void* args[16];
      void* values[16];
      size_t n = k->args.size();
      if (n >= 16) fail(ErrorCode::kInternal, "node '", k->node->name, "': too many kernel arguments");
      for (size_t i = 0; i < n; ++i) {
        values[i] = ptr(k->args[i], k->node);
        args[i] = &values[i];
      }
      args[n] = const_cast<codegen::Params*>(&k->params);
      KILN_CUDA(cudaLaunchKernel(reinterpret_cast<const void*>(k->kernel), dim3(k->grid), dim3(k->block), args, 0, stream),
                str("launching the kernel of node '", k->node->name, "' (", ir::op_name(k->node->op), ")"));
    } else if (auto* m = std::get_if<MatmulCall>(&step)) {
      launch_matmul(*m, ptr(m->a, m->node), ptr(m->b, m->node), ptr(m->c, m->node), ptr(m->d, m->node),
                    m->bias.value != ir::kNoValue ? ptr(m->bias, m->node) : nullptr, c.lt, c.workspace.get(),
                    c.workspace.bytes(), stream);
    } else if (auto* cv = std::get_if<CudnnCall>(&step)) {
      launch_cudnn(*cv, ptr(cv->x, cv->node), ptr(cv->w, cv->node), ptr(cv->y, cv->node),
                   cv->bias.value != ir::kNoValue ? ptr(cv->bias, cv->node) : nullptr, c.cudnn, c.workspace.get(), stream);
    }
  }
}

bool is_legacy_stream(cudaStream_t stream) { return stream == nullptr || stream == cudaStreamLegacy; }

// Addresses of the bound inputs and outputs: what a graph's launches depend on
// besides the context's own memory.
std::vector<void*> io_pointers(const ContextState& c) {
  std::vector<void*> out;
  for (size_t v = 0; v < c.io.size(); ++v)
    if (c.io[v]) out.push_back(c.pointers[v]);
  return out;
}

}  // namespace

void ExecutionContext::enqueue(cudaStream_t stream) {
  ContextState& c = *state_;
  const EngineState& e = *c.engine;
  bool caller_capturing = stream_is_capturing(stream);
  if (!caller_capturing) release_retired_kernels(c, stream, false);
  if (!c.current) c.current = &prepared_shape(c);
  PreparedShape& shape = *c.current;
  int swapped = shape.pending ? swap_in_ready_kernels(shape) : 0;
  resolve_pointers(c);

  graphs::CallState call;
  call.graphs_enabled = c.graph_strategy == CudaGraphStrategy::kWholeGraphCapture;
  call.legacy_stream = is_legacy_stream(stream);
  call.caller_capturing = caller_capturing && !call.legacy_stream;
  call.calls_at_shape = shape.calls;
  call.warmup_calls = e.config.graph_warmup_calls;
  call.has_graph = shape.graph.ready();
  call.capture_failed = !shape.capture_failure.empty();
  graphs::Decision decision = graphs::decide(call);
  ++c.stats.calls;
  ++shape.calls;
  if (swapped && shape.graph.ready()) shape.graph_stale_kernels = true;

  auto fall_back = [&](graphs::Fallback why, const std::string& detail) {
    std::string reason(graphs::fallback_name(why));
    if (e.config.strict_cuda_graphs)
      fail(ErrorCode::kDevice, "cuda_graph_strategy whole_graph_capture (strict): no graph for ", shape.key, ": ", reason,
           detail.empty() ? "" : ": ", detail);
    ++c.stats.fallbacks[reason];
    ++c.stats.direct;
    launch_steps(c, shape, stream);
  };
  auto record = [&](cudaStream_t s) { launch_steps(c, shape, s); };
  switch (decision.path) {
    case graphs::Path::kIntoCallerCapture:
      ++c.stats.into_caller_capture;
      launch_steps(c, shape, stream);
      return;  // nothing retired or fenced while the caller's capture is open
    case graphs::Path::kDirect:
      if (decision.fallback != graphs::Fallback::kNone) {
        fall_back(decision.fallback, decision.fallback == graphs::Fallback::kCaptureFailed ? shape.capture_failure : "");
      } else {
        ++c.stats.direct;
        launch_steps(c, shape, stream);
      }
      break;
    case graphs::Path::kCapture:
    case graphs::Path::kReplay: {
      std::vector<void*> pointers = io_pointers(c);
      bool repair = false;
      if (decision.path == graphs::Path::kReplay) {
        if (pointers != shape.graph_pointers) {
          ++c.stats.pointer_repairs;
          repair = true;
        }
        if (shape.graph_stale_kernels) {
          ++c.stats.kernel_swaps;
          repair = true;
        }
      }
      if (decision.path == graphs::Path::kCapture || repair) {
        std::string failure = shape.graph.capture(stream, record, c.counters);
        if (!failure.empty()) {
          shape.capture_failure = failure;
          fall_back(graphs::Fallback::kCaptureFailed, failure);
          break;
        }
        shape.graph_pointers = std::move(pointers);
        shape.graph_stale_kernels = false;
      } else {
        ++c.stats.replays;
      }
      KILN_CUDA(shape.graph.launch(stream), str("launching the graph of ", shape.key));
      break;
    }
  }
  release_retired_kernels(c, stream, true);
}

bool ExecutionContext::is_stream_capturable(cudaStream_t stream) const {
  const ContextState& c = *state_;
  if (is_legacy_stream(stream)) return false;
  const ir::Network& net = c.engine->plan.network;
  for (ir::ValueId id : net.inputs())
    if (!c.input_dims.count(net.value(id).name)) return false;
  for (size_t v = 0; v < c.io.size(); ++v)
    if (c.io[v] && !c.bound[v]) return false;
  return true;
}

void ExecutionContext::set_cuda_graph_strategy(CudaGraphStrategy strategy) { state_->graph_strategy = strategy; }
CudaGraphStrategy ExecutionContext::cuda_graph_strategy() const { return state_->graph_strategy; }

ExecutionContext::GraphStats ExecutionContext::graph_stats() const {
  GraphStats out = state_->stats;
  out.captures = state_->counters.captures;
  out.instantiations = state_->counters.instantiations;
  out.updates = state_->counters.updates;
  for (const PreparedShape& p : state_->shapes) out.graphs += p.graph.ready() ? 1 : 0;
  return out;
}

}  // namespace kiln::runtime

namespace kiln::runtime {

std::vector<ExecutionContext::ShapeStats> ExecutionContext::specialization_stats() const {
  std::vector<ShapeStats> out;
  for (const PreparedShape& p : state_->shapes) {
    ShapeStats st;
    st.shape = p.key;
    st.prepare_ms = p.prepare_ms;
    for (const Step& step : p.steps)
      if (auto* k = std::get_if<KernelLaunch>(&step)) {
        if (k->specialized) ++st.specialized;
        else if (k->special && k->special->state.load(std::memory_order_acquire) == Specialization::kPending) ++st.pending;
        else ++st.generic;
      }
    out.push_back(st);
  }
  return out;
}

std::string_view kernel_specialization_name(KernelSpecialization s) {
  switch (s) {
    case KernelSpecialization::kLazy: return "lazy";
    case KernelSpecialization::kEager: return "eager";
    case KernelSpecialization::kNone: return "none";
  }
  return "?";
}

std::string_view cuda_graph_strategy_name(CudaGraphStrategy s) {
  return s == CudaGraphStrategy::kDisabled ? "disabled" : "whole_graph_capture";
}

std::optional<CudaGraphStrategy> parse_cuda_graph_strategy(std::string_view name) {
  if (name == "disabled") return CudaGraphStrategy::kDisabled;
  if (name == "whole_graph_capture") return CudaGraphStrategy::kWholeGraphCapture;
  return std::nullopt;
}

std::optional<KernelSpecialization> parse_kernel_specialization(std::string_view name) {
  if (name == "lazy") return KernelSpecialization::kLazy;
  if (name == "eager") return KernelSpecialization::kEager;
  if (name == "none") return KernelSpecialization::kNone;
  return std::nullopt;
}

}  // namespace kiln::runtime

namespace kiln::runtime {

int warm_cache(const plan::Plan& plan, int arch, RuntimeCache& cache, const std::function<void(const std::string&)>& progress,
               const std::vector<InputShapes>& shape_sets) {
  KernelStore store;
  std::vector<std::unique_ptr<Op>> ops = make_ops(plan, store);
  int threads = std::clamp<int>(int(std::thread::hardware_concurrency()), 1, 16);
  store.compile_into_cache(arch, threads, progress, cache);
  int kernels = store.module_count();
  for (const InputShapes& shapes : shape_sets) {
    for (auto& [name, dims] : shapes) validate_input_shape(plan.network, name, dims);
    ShapeEnv env = evaluate_shapes(plan.network, shapes);
    std::vector<Step> steps;
    PrepareContext ctx{env, steps, nullptr, nullptr, 0, 1, /*dry=*/true};
    for (const auto& op : ops) op->prepare(ctx);
    int added = 0, total = 0;
    for (const Step& step : steps)
      if (auto* k = std::get_if<KernelLaunch>(&step); k && k->specializable && k->handle >= 0) {
        added += store.warm_specialized(k->handle, k->params, arch, cache);
        ++total;
      }
    if (progress) progress(str("specialized for ", shape_key(shapes), ": ", total, " kernels, ", added, " new"));
    kernels += total;
  }
  return kernels;
}

}  // namespace kiln::runtime
