// ExecutionContext: input shapes and addresses, prepared shapes (LRU),
// specialized-kernel swaps, and the enqueue paths with native CUDA graphs.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

#include "context_state.h"
#include "graphs/graph_policy.h"
#include "kiln/error.h"
#include "kiln/logging.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::runtime {

void ExecutionContext::warm_up() {
  ContextState& c = *state_;
  // Zeroed inputs are no sample of data-dependent sizes (a Range of zero
  // delta fails): such engines warm up on their first real call.
  if (!c.engine->readbacks.empty()) return;
  const ir::Network& net = c.engine->plan.network;
  ir::SymbolBindings opt;
  for (auto& [symbol, range] : c.engine->plan.profiles.at(size_t(c.profile))) opt[symbol] = range.opt;
  InputDims dims;
  for (ir::ValueId id : net.inputs()) {
    auto d = ir::evaluate_dims(net.value(id).shape, opt);
    if (!d) return;  // a dim without a range: nothing to warm up with
    dims[net.value(id).name] = *d;
  }
  std::string key = shape_key(dims);
  for (const PreparedShape& prepared : c.shapes)
    if (prepared.key == key) return;  // warmed up at these shapes before
  auto input_dims = c.input_dims;
  std::vector<void*> bound = c.bound;
  ExecutionContext::GraphStats stats = c.stats;
  auto restore = [&] {  // the caller sees the context as before; the opt shape stays prepared
    c.bound = bound;
    c.input_dims = input_dims;
    c.input_slots.assign(c.input_slots.size(), nullptr);
    c.current = nullptr;
    c.stats = stats;
  };
  for (auto& [name, d] : dims) set_input_shape(name, d);
  std::vector<DeviceBuffer> scratch;
  std::vector<ir::ValueId> io(net.inputs().begin(), net.inputs().end());
  io.insert(io.end(), net.outputs().begin(), net.outputs().end());
  for (ir::ValueId id : io) {  // never the caller's buffers: they may be smaller than the opt shapes
    auto d = tensor_shape(net.value(id).name);
    size_t bytes = std::max<size_t>(size_t(ir::checked_numel(d)) * dtype_size(net.value(id).dtype), 256);
    scratch.emplace_back(bytes, "warm-up scratch for " + net.value(id).name);
    fill_device(scratch.back().get(), 0, bytes, "zeroing warm-up scratch");  // zeros: valid indices for gathers
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

ContextState::~ContextState() {
  std::optional<DeviceScope> on_device;
  try {
    on_device.emplace(engine->device);
  } catch (const Error&) {  // the frees below report nothing either
  }
  graphs::CaptureGate::Exclusive gate;  // the libraries free device memory
  if (lt) cublasLtDestroy(lt);
  if (cudnn) cudnnDestroy(cudnn);
  if (fence) cudaEventDestroy(fence);
  if (staging_uploaded) cudaEventDestroy(staging_uploaded);
  if (joined_in) cudaEventDestroy(joined_in);
  if (joined_out) cudaEventDestroy(joined_out);
  if (own_stream) cudaStreamDestroy(own_stream);
  for (ReleasedKernels& r : released) cudaEventDestroy(r.event);
}

void ExecutionContext::set_optimization_profile(int profile, cudaStream_t stream) {
  ContextState& c = *state_;
  DeviceScope on_device(c.engine->device);
  const plan::Plan& plan = c.engine->plan;
  // Warming up allocates and synchronizes: none of it may happen inside the caller's capture.
  if (graphs::stream_is_capturing(stream))
    fail(ErrorCode::kInvalidArgument, "set_optimization_profile(", profile,
         ") inside a stream capture: selecting a profile warms the context up at its opt shapes, which a capture "
         "forbids; select it before capturing (the capture and the context are left as they were)");
  if (profile < 0 || size_t(profile) >= plan.profiles.size())
    fail(ErrorCode::kInvalidArgument, "optimization profile ", profile, " does not exist: the plan has ", plan.profiles.size(),
         plan.profiles.size() == 1 ? " profile (0)" : str(" profiles (0 to ", plan.profiles.size() - 1, ")"));
  if (profile == c.profile) return;
  c.profile = profile;
  // The prepared shapes stay (each is valid for its own shapes); input shapes
  // the new profile does not accept are unset, to be set again.
  bool unset = false;
  for (auto it = c.input_dims.begin(); it != c.input_dims.end();) {
    if (plan::profile_accepts(plan, profile, it->first, it->second)) {
      ++it;
    } else {
      it = c.input_dims.erase(it);
      unset = true;
    }
  }
  if (unset) {
    c.input_slots.assign(c.input_slots.size(), nullptr);
    c.current = nullptr;
  }
  if (c.engine->config.warm_up_contexts) warm_up();
}

int ExecutionContext::optimization_profile() const { return state_->profile; }

void ExecutionContext::set_input_shape(std::string_view name, const std::vector<int64_t>& dims) {
  plan::check_input_shape(state_->engine->plan, state_->profile, name, dims);
  auto& slot = state_->input_dims[std::string(name)];
  if (slot != dims) {
    slot = dims;
    state_->current = nullptr;  // the next enqueue finds or prepares this shape
  }
}

ShapeEnv evaluate_shapes(const ir::Network& net, const std::map<std::string, std::vector<int64_t>, std::less<>>& input_dims,
                         const ir::SymbolBindings* resolved) {
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
  if (resolved) env.bindings.insert(resolved->begin(), resolved->end());
  env.dims.resize(net.values().size());
  env.pending.assign(net.values().size(), false);
  for (size_t i = 0; i < net.values().size(); ++i) {
    const ir::Value& v = net.values()[i];
    for (const ir::Dim& d : v.shape) {
      auto x = d.evaluate(env.bindings);
      if (!x && resolved) {
        env.pending[i] = true;
        env.dims[i].clear();
        break;
      }
      if (!x)
        fail(ErrorCode::kInvalidArgument, "tensor '", v.name, "' has a size (", d.to_string(),
             ") that depends on input data: it is known once enqueue has run (max_tensor_shape gives its bound)");
      if (*x < 0) fail(ErrorCode::kShapeError, "tensor '", v.name, "' would have negative dim ", *x, " for these input shapes");
      env.dims[i].push_back(*x);
    }
  }
  // Dims that are expressions (2*n) bind nothing: they must agree with what was set.
  for (ir::ValueId id : net.inputs()) {
    const ir::Value& v = net.value(id);
    const std::vector<int64_t>& set = input_dims.find(v.name)->second;
    if (env.dims[size_t(id)] != set)
      fail(ErrorCode::kShapeError, "input '", v.name, "' ", ir::shape_to_string(v.shape), " was set to ",
           ir::shape_to_string(ir::shape_of(set)), " but the other inputs make it ",
           ir::shape_to_string(ir::shape_of(env.dims[size_t(id)])));
  }
  return env;
}


namespace {

// A tensor's dims from the input shapes alone, before enqueue has read back
// any data-dependent size; failing for a tensor whose size waits for one.
std::vector<int64_t> dims_from_input_shapes(const ContextState& c, ir::ValueId id) {
  const ir::Network& net = c.engine->plan.network;
  ir::SymbolBindings none;
  ShapeEnv env = evaluate_shapes(net, c.input_dims, &none);
  if (env.pending[size_t(id)])
    fail(ErrorCode::kInvalidArgument, "tensor '", net.value(id).name, "' has a size that depends on input data: it is known "
         "once enqueue has run (max_tensor_shape gives its bound)");
  return std::move(env.dims[size_t(id)]);
}

}  // namespace

std::vector<int64_t> ExecutionContext::tensor_shape(std::string_view name) const {
  const ir::Network& net = state_->engine->plan.network;
  auto id = net.find_value(name);
  if (!id) fail(ErrorCode::kInvalidArgument, "'", name, "' is not a tensor of the network");
  if (!state_->current) return dims_from_input_shapes(*state_, *id);
  return state_->current->shapes.dims[size_t(*id)];
}

std::vector<int64_t> ExecutionContext::max_tensor_shape(std::string_view name) const {
  const ir::Network& net = state_->engine->plan.network;
  auto id = net.find_value(name);
  if (!id) fail(ErrorCode::kInvalidArgument, "'", name, "' is not a tensor of the network");
  ir::SymbolBindings bounds;  // data-dependent sizes at the bounds `kiln build` planned
  for (const std::string& s : net.data_dependent_symbols())
    if (auto r = net.dim_ranges().find(s); r != net.dim_ranges().end()) bounds[s] = r->second.max;
  return evaluate_shapes(net, state_->input_dims, &bounds).dims[size_t(*id)];
}

namespace {

// Checks that `address` is device memory on the engine's device (host
// memory for a string tensor: its std::string elements), then binds it.
void bind_address(ContextState& c, ir::ValueId id, void* address) {
  const ir::Value& value = c.engine->plan.network.value(id);
  const std::string& name = value.name;
  if (!address) fail(ErrorCode::kInvalidArgument, "the address for '", name, "' is null");
  cudaPointerAttributes attr{};
  bool known = cudaPointerGetAttributes(&attr, address) == cudaSuccess;
  if (!known) cudaGetLastError();
  bool device = known && attr.type != cudaMemoryTypeUnregistered && attr.type != cudaMemoryTypeHost;
  if (is_string(value.dtype)) {
    if (device)
      fail(ErrorCode::kInvalidArgument, "the address for '", name, "' is device memory; '", name, "' is a string tensor, "
           "bound as host memory holding a std::string per element");
    c.bound[size_t(id)] = address;
    return;
  }
  if (!device) fail(ErrorCode::kInvalidArgument, "the address for '", name, "' is not device memory");
  if (attr.device != c.engine->device)
    fail(ErrorCode::kInvalidArgument, "the address for '", name, "' is on device ", attr.device, "; the engine is on device ",
         c.engine->device);
  c.bound[size_t(id)] = address;
}

// The value of an input or output by its index (inputs first, then outputs).
ir::ValueId io_value(const ir::Network& net, int index) {
  size_t inputs = net.inputs().size(), all = inputs + net.outputs().size();
  if (index < 0 || size_t(index) >= all)
    fail(ErrorCode::kInvalidArgument, "tensor index ", index, " is not an input or output index (the network has ", inputs,
         " inputs and ", all - inputs, " outputs)");
  return size_t(index) < inputs ? net.inputs()[size_t(index)] : net.outputs()[size_t(index) - inputs];
}

}  // namespace

void ExecutionContext::set_tensor_address(std::string_view name, void* address) {
  const ir::Network& net = state_->engine->plan.network;
  auto id = net.find_value(name);
  bool io = id && (net.value(*id).is_input ||
                   std::find(net.outputs().begin(), net.outputs().end(), *id) != net.outputs().end());
  if (!io) fail(ErrorCode::kInvalidArgument, "'", name, "' is not an input or output of the network");
  bind_address(*state_, *id, address);
}

int ExecutionContext::io_index(std::string_view name) const {
  const ir::Network& net = state_->engine->plan.network;
  for (int i = 0, n = io_count(); i < n; ++i)
    if (net.value(io_value(net, i)).name == name) return i;
  fail(ErrorCode::kInvalidArgument, "'", name, "' is not an input or output of the network");
}

int ExecutionContext::io_count() const {
  const ir::Network& net = state_->engine->plan.network;
  return int(net.inputs().size() + net.outputs().size());
}

bool ExecutionContext::io_is_input(int index) const {
  const ir::Network& net = state_->engine->plan.network;
  io_value(net, index);
  return size_t(index) < net.inputs().size();
}

void ExecutionContext::set_input_shape(int index, std::span<const int64_t> dims) {
  ContextState& c = *state_;
  const ir::Network& net = c.engine->plan.network;
  ir::ValueId id = io_value(net, index);
  const ir::Value& v = net.value(id);
  if (!v.is_input) fail(ErrorCode::kInvalidArgument, "'", v.name, "' (index ", index, ") is an output, not an input");
  c.input_slots.resize(net.inputs().size(), nullptr);
  const std::vector<int64_t>* slot = c.input_slots[size_t(index)];
  if (slot && std::equal(slot->begin(), slot->end(), dims.begin(), dims.end())) return;
  set_input_shape(v.name, std::vector<int64_t>(dims.begin(), dims.end()));
  c.input_slots[size_t(index)] = &c.input_dims.find(v.name)->second;
}

void ExecutionContext::set_tensor_address(int index, void* address) {
  ContextState& c = *state_;
  ir::ValueId id = io_value(c.engine->plan.network, index);
  if (c.bound[size_t(id)] == address && address) return;
  bind_address(c, id, address);
}

std::string shape_key(const std::map<std::string, std::vector<int64_t>, std::less<>>& dims) {
  std::string key;
  for (auto& [name, d] : dims) {
    key += (key.empty() ? "" : ",") + name + ":";
    for (size_t i = 0; i < d.size(); ++i) key += (i ? "x" : "") + std::to_string(d[i]);
  }
  return key;
}

namespace {

// The prepared launches for the current input shapes, made most recently
// used; null when this context has not prepared them (or forgot them).
PreparedShape* find_prepared_shape(ContextState& c) {
  std::string key = shape_key(c.input_dims);
  for (auto it = c.shapes.begin(); it != c.shapes.end(); ++it)
    if (it->key == key) {
      c.shapes.splice(c.shapes.begin(), c.shapes, it);
      return &c.shapes.front();
    }
  return nullptr;
}

}  // namespace

// Finds the prepared launches for the current input shapes, or prepares them
// (host work only: shapes, parameters, library plans, specialization requests).
PreparedShape& prepared_shape(ContextState& c) {
  const EngineState& e = *c.engine;
  if (!e.readbacks.empty())
    fail(ErrorCode::kInvalidArgument, staged_reason(e), ": this engine's launches are prepared by enqueue, up to each value it "
         "reads back, so they cannot be prepared or profiled ahead of a call");
  if (PreparedShape* found = find_prepared_shape(c)) return *found;
  return prepared_launches(c, shape_key(c.input_dims), evaluate_shapes(e.plan.network, c.input_dims), 0, e.ops.size(),
                           c.specialization);
}

PreparedShape& prepared_launches(ContextState& c, const std::string& key, const ShapeEnv& shapes, size_t begin, size_t end,
                                 KernelSpecialization strategy) {
  const EngineState& e = *c.engine;
  for (auto it = c.shapes.begin(); it != c.shapes.end(); ++it)
    if (it->key == key) {
      c.shapes.splice(c.shapes.begin(), c.shapes, it);
      return c.shapes.front();
    }
  auto started = std::chrono::steady_clock::now();
  PreparedShape p;
  p.key = key;
  p.shapes = shapes;
  plan::check_arena_fits(e.plan, p.shapes.dims);
  const ContextState& libraries = library_owner(c);
  PrepareContext ctx{p.shapes, p.steps, libraries.lt, libraries.cudnn, libraries.workspace.bytes(), e.sm_count};
  ctx.cache = e.config.cache.get();
  ctx.arch = e.arch;
  for (size_t i = begin; i < end; ++i) e.ops[i]->prepare(ctx);
  // A subgraph's kernels are registered in its engine's store.
  const KernelStore& kernels = c.owner ? c.owner->engine->store : e.store;
  for (Step& step : p.steps) {
    auto* k = std::get_if<KernelLaunch>(&step);
    if (k && k->specializable && k->handle >= 0 && strategy != KernelSpecialization::kNone)
      k->special = kernels.specialize(k->handle, k->params);  // null once the bound is reached
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
    ContextState& keeper = c.owner ? *c.owner : c;  // a subgraph's forgotten kernels wait for its engine context's fence
    for (Step& step : c.shapes.back().steps)
      if (auto* k = std::get_if<KernelLaunch>(&step); k && k->special) keeper.retiring.push_back(std::move(k->special));
    c.shapes.pop_back();
  }
  return c.shapes.front();
}

namespace {

// Outside captures, before the call's work: lets go of forgotten specialized
// kernels once the context's fence has passed, and unloads modules nothing
// holds any more.
void release_fenced_kernels(ContextState& c) {
  if (c.fence_pending && cudaEventQuery(c.fence) == cudaSuccess) {
    c.fenced.clear();
    c.fence_pending = false;
  }
  while (!c.released.empty() && cudaEventQuery(c.released.front().event) == cudaSuccess) {
    cudaEventDestroy(c.released.front().event);
    c.released.erase(c.released.begin());
  }
  if (c.engine->store.has_retired()) c.engine->store.unload_retired();
}

// Outside captures, after the call's work: kernels this context forgot wait
// for an event recorded behind everything it has queued so far.
void fence_retiring_kernels(ContextState& c, cudaStream_t stream) {
  if (c.retiring.empty() || c.fence_pending) return;
  KILN_CUDA(cudaEventRecord(c.fence, stream), "recording the context's event");
  c.fenced = std::move(c.retiring);
  c.retiring.clear();
  c.fence_pending = true;
}

}  // namespace

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

// Launches one step on `stream` (directly, or into a capture).
void launch_step(const ContextState& c, const Step& step, cudaStream_t stream) {
  const ir::Network& net = c.engine->plan.network;
  auto ptr = [&](const PtrRef& r, const ir::Node* node) -> void* {
    if (r.value == kReadbackScratch) return c.readback_scratch.get() + r.offset;
    if (r.value == ir::kNoValue) return nullptr;
    void* base = c.pointers[size_t(r.value)];
    if (!base) fail(ErrorCode::kInternal, "node '", node->name, "': tensor '", net.value(r.value).name, "' has no storage");
    return static_cast<std::byte*>(base) + r.offset;
  };
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
    const ContextState& libraries = library_owner(c);
    launch_matmul(*m, ptr(m->a, m->node), ptr(m->b, m->node), ptr(m->c, m->node), ptr(m->d, m->node),
                  m->bias.value != ir::kNoValue ? ptr(m->bias, m->node) : nullptr, libraries.lt, libraries.workspace.get(),
                  libraries.workspace.bytes(), stream);
  } else if (auto* cv = std::get_if<CudnnCall>(&step)) {
    const ContextState& libraries = library_owner(c);
    launch_cudnn(*cv, ptr(cv->x, cv->node), cv->w.value != ir::kNoValue ? ptr(cv->w, cv->node) : nullptr, ptr(cv->y, cv->node),
                 cv->bias.value != ir::kNoValue ? ptr(cv->bias, cv->node) : nullptr, libraries.cudnn, libraries.workspace.get(),
                 stream);
  }
}

namespace {

// Launches the shape's steps on `stream` (directly, or into a capture).
void launch_steps(const ContextState& c, const PreparedShape& shape, cudaStream_t stream) {
  for (const Step& step : shape.steps) launch_step(c, step, stream);
}

// Addresses of the bound inputs and outputs: what a graph's launches depend on
// besides the context's own memory.
std::vector<void*> io_pointers(const ContextState& c) {
  std::vector<void*> out;
  for (size_t v = 0; v < c.io.size(); ++v)
    if (c.io[v]) out.push_back(c.pointers[v]);
  return out;
}

// The sizes of those buffers at `shape`, in the same order.
std::vector<size_t> io_bytes(const ContextState& c, const PreparedShape& shape) {
  const ir::Network& net = c.engine->plan.network;
  std::vector<size_t> out;
  for (size_t v = 0; v < c.io.size(); ++v)
    if (c.io[v]) out.push_back(size_t(ir::checked_numel(shape.shapes.dims[v])) * dtype_size(net.values()[v].dtype));
  return out;
}

// Whether the inputs and outputs are where `captured` (io_pointers at capture)
// says; compared in place, so a replay allocates nothing.
bool io_pointers_match(const ContextState& c, const std::vector<void*>& captured) {
  size_t i = 0;
  for (size_t v = 0; v < c.io.size(); ++v)
    if (c.io[v] && (i >= captured.size() || captured[i++] != c.pointers[v])) return false;
  return i == captured.size();
}

}  // namespace

void ExecutionContext::enqueue(cudaStream_t stream) {
  ContextState& c = *state_;
  const EngineState& e = *c.engine;
  DeviceScope on_device(e.device);
  bool caller_capturing = graphs::stream_is_capturing(stream);
  if (!e.readbacks.empty()) {
    if (caller_capturing)
      fail(ErrorCode::kInvalidArgument, "enqueue inside a stream capture: ", staged_reason(e),
           ", which enqueue reads back from the GPU and waits for; a capture cannot hold that (the capture is left as it was)");
    release_fenced_kernels(c);
    graphs::CallState call;
    call.graphs_enabled = c.graph_strategy == CudaGraphStrategy::kWholeGraphCapture;
    call.data_dependent = !e.data_dependent.empty();
    call.host_steps = !e.host_step.empty();
    graphs::Decision decision = graphs::decide(call);
    if (decision.fallback != graphs::Fallback::kNone) {
      std::string reason(graphs::fallback_name(decision.fallback));
      if (e.config.strict_cuda_graphs)
        fail(ErrorCode::kDevice, "cuda_graph_strategy whole_graph_capture (strict): no graph for this engine: ", reason, ": ",
             staged_reason(e));
      ++c.stats.fallbacks[reason];
      if (!c.warned_data_dependent && log_enabled(Severity::kWarning))
        log(Severity::kWarning, str("cuda_graph_strategy whole_graph_capture: ", staged_reason(e),
                                    ", which enqueue reads back and waits for; this engine runs without CUDA graphs"));
      c.warned_data_dependent = true;
    }
    ++c.stats.calls;
    ++c.stats.direct;
    enqueue_data_dependent(c, stream);
    fence_retiring_kernels(c, stream);
    return;
  }
  if (!caller_capturing) release_fenced_kernels(c);
  if (!c.current) {
    // Preparing may create library plans, wait for compiles and forget other
    // shapes: none of it may happen inside the caller's capture.
    if (caller_capturing && !find_prepared_shape(c))
      fail(ErrorCode::kInvalidArgument, "enqueue inside a stream capture: shape ", shape_key(c.input_dims),
           " is not prepared on this context; call prepare() with it, or run it once, before capturing (the capture is "
           "left as it was)");
    c.current = &prepared_shape(c);
  }
  PreparedShape& shape = *c.current;
  int swapped = shape.pending ? swap_in_ready_kernels(shape) : 0;
  resolve_pointers(c);

  graphs::CallState call;
  call.graphs_enabled = c.graph_strategy == CudaGraphStrategy::kWholeGraphCapture;
  call.legacy_stream = graphs::is_legacy_stream(stream);
  call.caller_capturing = caller_capturing && !call.legacy_stream;
  call.calls_at_shape = shape.calls;
  call.warmup_calls = e.config.graph_warmup_calls;
  call.has_graph = !shape.graphs.empty();
  call.capture_failed = !shape.capture_failure.empty();
  call.retry_capture_at = shape.retry_capture_at;
  graphs::Decision decision = graphs::decide(call);
  ++c.stats.calls;
  ++shape.calls;
  if (swapped)
    for (GraphVariant& g : shape.graphs) g.stale_kernels = true;

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
      for (Step& step : shape.steps)  // the caller's graph may launch these long after this shape is forgotten
        if (auto* k = std::get_if<KernelLaunch>(&step); k && k->specialized) c.captured.insert(k->special);
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
      // The graph made for these addresses; else a new one while there is
      // room, else the least recently used one repaired for them.
      GraphVariant* variant = nullptr;
      for (GraphVariant& g : shape.graphs)
        if (io_pointers_match(c, g.pointers)) variant = &g;
      bool capture = variant == nullptr || variant->stale_kernels;
      if (variant && variant->stale_kernels) ++c.stats.kernel_swaps;
      if (!variant && shape.graphs.size() < std::max<size_t>(e.config.graphs_per_shape, 1)) {
        variant = &shape.graphs.emplace_back();
      } else if (!variant) {
        variant = &*std::min_element(shape.graphs.begin(), shape.graphs.end(),
                                     [](const GraphVariant& a, const GraphVariant& b) { return a.last_use < b.last_use; });
        ++c.stats.pointer_repairs;
        std::vector<void*> io = io_pointers(c);
        if (e.config.patch_graph_arguments && !variant->stale_kernels && variant->graph.patch(io, c.counters)) {
          variant->pointers = std::move(io);
          capture = false;
        }
      }
      // Capturing records and launches nothing: the graph is captured on the
      // stream it will be launched from.
      cudaStream_t graph_stream = decision.on_context_stream ? c.own_stream : stream;
      if (capture) {
        std::string failure = variant->graph.capture(graph_stream, record, c.counters, io_pointers(c), io_bytes(c, shape));
        if (!failure.empty()) {
          // Another thread's call may have broken it: direct launches for a
          // while, then capture again, backing off while it keeps failing.
          shape.graphs.clear();
          shape.capture_failure = failure;
          ++c.stats.capture_failures;
          shape.retry_capture_at = shape.calls + graphs::capture_retry_delay(++shape.capture_failures);
          if (log_enabled(Severity::kWarning))
            log(Severity::kWarning, str("capturing the graph of ", shape.key, " failed (", failure, "); direct launches for ",
                                        shape.retry_capture_at - shape.calls, " calls, then a new capture"));
          fall_back(graphs::Fallback::kCaptureFailed, failure);
          break;
        }
        shape.capture_failures = 0;
        shape.capture_failure.clear();
        variant->pointers = io_pointers(c);
        variant->stale_kernels = false;
      } else {
        ++c.stats.replays;
      }
      variant->last_use = c.stats.calls;
      if (decision.on_context_stream) {
        ++c.stats.on_context_stream;
        KILN_CUDA(cudaEventRecord(c.joined_in, stream), "joining the caller's stream");
        KILN_CUDA(cudaStreamWaitEvent(c.own_stream, c.joined_in, 0), "joining the caller's stream");
      }
      KILN_CUDA(variant->graph.launch(graph_stream), str("launching the graph of ", shape.key));
      if (decision.on_context_stream) {
        KILN_CUDA(cudaEventRecord(c.joined_out, c.own_stream), "joining the caller's stream");
        KILN_CUDA(cudaStreamWaitEvent(stream, c.joined_out, 0), "joining the caller's stream");
      }
      break;
    }
  }
  fence_retiring_kernels(c, stream);
}

const std::vector<int64_t>& ExecutionContext::tensor_shape(int index) {
  ContextState& c = *state_;
  ir::ValueId id = io_value(c.engine->plan.network, index);
  if (!c.current && !c.engine->readbacks.empty()) {
    // enqueue prepares such an engine stage by stage, as it reads sizes back
    c.dims_before_enqueue = dims_from_input_shapes(c, id);
    return c.dims_before_enqueue;
  }
  if (!c.current) {
    DeviceScope on_device(c.engine->device);  // preparing may make library plans
    c.current = &prepared_shape(c);
  }
  return c.current->shapes.dims[size_t(id)];
}

bool ExecutionContext::is_stream_capturable(cudaStream_t stream) const { return capture_obstacle(stream).empty(); }

std::string ExecutionContext::capture_obstacle(cudaStream_t stream) const {
  const ContextState& c = *state_;
  if (!c.engine->readbacks.empty())
    return str(staged_reason(*c.engine), ": enqueue reads it back and waits for the GPU");
  if (graphs::is_legacy_stream(stream)) return "the legacy default stream cannot be captured";
  const ir::Network& net = c.engine->plan.network;
  for (ir::ValueId id : net.inputs())
    if (!c.input_dims.count(net.value(id).name)) return str("the shape of input '", net.value(id).name, "' is not set");
  for (size_t v = 0; v < c.io.size(); ++v)
    if (c.io[v] && !c.bound[v]) return str("'", net.values()[v].name, "' has no address");
  return {};
}

void ExecutionContext::prepare() {
  ContextState& c = *state_;
  DeviceScope on_device(c.engine->device);
  if (!c.current) c.current = &prepared_shape(c);
}

void ExecutionContext::prepare(const std::vector<InputShapes>& shape_sets, bool wait_for_specialized) {
  ContextState& c = *state_;
  const EngineState& e = *c.engine;
  DeviceScope on_device(e.device);
  size_t keep = std::max<size_t>(1, e.config.shapes_per_context);
  if (shape_sets.size() > keep)
    fail(ErrorCode::kInvalidArgument, "prepare: ", shape_sets.size(), " sets of input shapes, but the context keeps ", keep,
         " (RuntimeConfig::shapes_per_context)");
  const ir::Network& net = e.plan.network;
  InputDims saved = c.input_dims;
  std::vector<PreparedShape*> prepared;
  try {
    for (const InputShapes& shapes : shape_sets) {
      for (ir::ValueId id : net.inputs())
        if (!shapes.count(net.value(id).name) && !saved.count(net.value(id).name))
          fail(ErrorCode::kInvalidArgument, "prepare: the shape of input '", net.value(id).name, "' is not given");
      for (auto& [name, dims] : shapes) plan::check_input_shape(e.plan, c.profile, name, dims);
      c.input_dims = saved;
      for (auto& [name, dims] : shapes) c.input_dims[name] = dims;
      prepared.push_back(&prepared_shape(c));
    }
  } catch (...) {
    c.input_dims = saved;
    c.current = nullptr;
    throw;
  }
  c.input_dims = saved;  // the shapes set by the caller stay as they were
  c.input_slots.assign(c.input_slots.size(), nullptr);
  c.current = nullptr;
  if (!wait_for_specialized) return;
  for (PreparedShape* shape : prepared)
    while (shape->pending) {
      swap_in_ready_kernels(*shape);
      if (shape->pending) std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  for (PreparedShape* shape : prepared)
    for (GraphVariant& g : shape->graphs) g.stale_kernels = true;
}

void ExecutionContext::release_captured_kernels(cudaStream_t stream) {
  ContextState& c = *state_;
  if (c.captured.empty()) return;
  DeviceScope on_device(c.engine->device);
  if (graphs::stream_is_capturing(stream))
    fail(ErrorCode::kInvalidArgument, "release_captured_kernels: the stream is being captured; call it after the capture");
  ReleasedKernels r;
  KILN_CUDA(cudaEventCreateWithFlags(&r.event, cudaEventDisableTiming), "creating an event for released kernels");
  if (cudaError_t e = cudaEventRecord(r.event, stream); e != cudaSuccess) {
    cudaEventDestroy(r.event);
    KILN_CUDA(e, "recording the event for released kernels");
  }
  r.kernels.assign(c.captured.begin(), c.captured.end());
  c.captured.clear();
  c.released.push_back(std::move(r));
}

size_t ExecutionContext::captured_kernel_count() const { return state_->captured.size(); }

void ExecutionContext::set_kernel_specialization(KernelSpecialization strategy) { state_->specialization = strategy; }
KernelSpecialization ExecutionContext::kernel_specialization() const { return state_->specialization; }

void ExecutionContext::set_cuda_graph_strategy(CudaGraphStrategy strategy) { state_->graph_strategy = strategy; }
CudaGraphStrategy ExecutionContext::cuda_graph_strategy() const { return state_->graph_strategy; }

ExecutionContext::GraphStats ExecutionContext::graph_stats() const {
  GraphStats out = state_->stats;
  out.captures = state_->counters.captures;
  out.instantiations = state_->counters.instantiations;
  out.updates = state_->counters.updates;
  out.pointer_patches = state_->counters.patches;
  for (const PreparedShape& p : state_->shapes) out.graphs += int64_t(p.graphs.size());
  return out;
}

std::vector<ExecutionContext::ShapeStats> ExecutionContext::specialization_stats() const {
  std::vector<ShapeStats> out;
  for (const PreparedShape& p : state_->shapes) {
    ShapeStats st;
    st.shape = p.key;
    st.prepare_ms = p.prepare_ms;
    for (const Step& step : p.steps)
      if (auto* k = std::get_if<KernelLaunch>(&step)) {
        if (k->specialized) ++st.specialized;
        else if (k->special) ++st.pending;  // until an enqueue swaps it in, the generic kernel runs
        else ++st.generic;
        st.kernels.emplace_back(k->node->name, k->specialized);
      }
    st.complete = st.pending == 0;
    out.push_back(st);
  }
  return out;
}

}  // namespace kiln::runtime
