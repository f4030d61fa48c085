// Engine: a plan on one device (weights uploaded, kernels compiled), its
// contexts' creation, and cache warming without a GPU.
#include <algorithm>
#include <map>
#include <thread>

#include "context_state.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/logging.h"
#include "jit/nvrtc.h"

namespace kiln::runtime {

namespace {
constexpr size_t kWorkspaceBytes = 32 << 20;  // cuBLASLt and cuDNN workspace per context

using Progress = std::function<void(const std::string&)>;

// A caller's own progress callback gets the lines; without one they go to the log.
Progress progress_or_log(const Progress& progress) {
  if (progress) return progress;
  return [](const std::string& line) { kiln::log(Severity::kInfo, line); };
}
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

// Whether the plan, or a subgraph of it, has cuDNN work.
bool needs_cudnn(const EngineState& e) {
  for (size_t n = 0; n < e.ops.size(); ++n) {
    ir::OpKind op = e.plan.network.nodes()[n].op;
    if (op == ir::OpKind::kConv || op == ir::OpKind::kConvChannelsLast || op == ir::OpKind::kMaxPoolChannelsLast) return true;
    if (auto* cf = dynamic_cast<const ControlFlowOp*>(e.ops[n].get()))
      for (const auto& body : cf->bodies)
        if (needs_cudnn(*body)) return true;
  }
  return false;
}

// One op per node, registering their kernels; everything unsupported in one error.
std::vector<std::unique_ptr<Op>> make_ops(const plan::Plan& plan, KernelStore& store, int arch) {
  std::vector<std::unique_ptr<Op>> ops;
  std::map<std::string, int> unsupported;
  for (const ir::Node& node : plan.network.nodes()) {
    std::string reason;
    auto op = make_op(plan, node, store, reason, arch);
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

// Weights: one allocation, 256-byte aligned slots, uploaded once.
void upload_weights(EngineState& s) {
  const ir::Network& net = s.plan.network;
  s.weight_offset.assign(net.values().size(), -1);
  size_t total = 0;
  for (size_t v = 0; v < net.values().size(); ++v)
    if (net.values()[v].weight) {
      s.weight_offset[v] = int64_t(total);
      total += (net.values()[v].weight->data.size() + 255) / 256 * 256;
    }
  s.weights = DeviceBuffer(total, "weights");
  for (size_t v = 0; v < net.values().size(); ++v)
    if (net.values()[v].weight)
      copy_to_device(s.weights.get() + s.weight_offset[v], net.values()[v].weight->data.data(),
                     net.values()[v].weight->data.size(), "uploading weight " + net.values()[v].name);
}

void reset_device_after_error() {
  cudaDeviceReset();
  cudaGetLastError();
}

Engine::Engine(std::unique_ptr<EngineState> state) : state_(std::move(state)) {}
Engine::~Engine() = default;
const plan::Plan& Engine::plan() const { return state_->plan; }
const RuntimeConfig& Engine::config() const { return state_->config; }
int Engine::profile_count() const { return int(state_->plan.profiles.size()); }
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
  KILN_CUDA(cudaGetDevice(&s->device), "asking for the current device");
  if (config.device >= 0) s->device = config.device;
  DeviceScope on_device(s->device);
  cudaDeviceProp prop{};
  KILN_CUDA(cudaGetDeviceProperties(&prop, s->device), "");
  s->sm_count = prop.multiProcessorCount;
  s->arch = prop.major * 10 + prop.minor;

  s->ops = make_ops(s->plan, s->store, s->arch);
  plan_readbacks(*s);
  upload_weights(*s);
  s->config = config;
  set_up_subgraphs(*s);

  int threads = config.compile_threads > 0 ? config.compile_threads
                                           : std::clamp<int>(int(std::thread::hardware_concurrency()), 1, 16);
  s->store.compile_all(s->arch, threads, progress_or_log(config.progress), config.cache.get());
  // lazy compiles in the background on a few threads; eager on as many as
  // compile the generic kernels, while the first call at a shape waits. A
  // `none` engine keeps a few too: a context may choose another strategy.
  bool eager = config.dynamic_shapes_kernel_specialization_strategy == KernelSpecialization::kEager;
  s->store.start_specializer(s->device, eager ? threads : std::max(1, config.specialization_threads),
                             config.max_specialized_kernels);
  return std::shared_ptr<Engine>(new Engine(std::move(s)));
}


std::unique_ptr<ExecutionContext> Engine::create_context() {
  auto c = std::make_unique<ContextState>();
  c->engine = state_.get();
  c->graph_strategy = state_->config.cuda_graph_strategy;
  c->specialization = state_->config.dynamic_shapes_kernel_specialization_strategy;
  DeviceScope on_device(state_->device);
  // Never empty: tensors of no elements have addresses too (kernels read none of their bytes).
  c->arena = DeviceBuffer(std::max<size_t>(size_t(state_->plan.arena_bytes), plan::kArenaAlignment), "the activation arena");
  c->workspace = DeviceBuffer(kWorkspaceBytes, "the cuBLASLt workspace");
  KILN_CUDA(cudaEventCreateWithFlags(&c->fence, cudaEventDisableTiming), "creating the context's event");
  KILN_CUDA(cudaEventCreateWithFlags(&c->joined_in, cudaEventDisableTiming), "creating the context's event");
  KILN_CUDA(cudaEventCreateWithFlags(&c->joined_out, cudaEventDisableTiming), "creating the context's event");
  KILN_CUDA(cudaStreamCreateWithFlags(&c->own_stream, cudaStreamNonBlocking), "creating the context's stream");
  make_readback_memory(*c);
  make_subgraph_contexts(*c);
  {
    graphs::CaptureGate::Exclusive gate;  // the libraries allocate device memory
    KILN_CUBLAS(cublasLtCreate(&c->lt), "creating the cuBLASLt handle");
    if (needs_cudnn(*state_) && cudnnCreate(&c->cudnn) != CUDNN_STATUS_SUCCESS)
      fail(ErrorCode::kDevice, "cannot create the cuDNN handle");
  }
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
  std::vector<ShapeEnv> envs;  // every shape set is checked before anything is compiled
  // Engines with data-dependent sizes run generic kernels only (readback.cpp): no specialized ones to warm.
  // (Those of control flow are warmed for the launches around it; its subgraphs' shapes are known when it runs.)
  bool generic_only = !plan.network.data_dependent_symbols().empty();
  for (const InputShapes& shapes : shape_sets) {
    auto accepted_by = [&](int k) {
      return std::all_of(shapes.begin(), shapes.end(), [&](auto& s) { return plan::profile_accepts(plan, k, s.first, s.second); });
    };
    int profile = 0;  // the first profile that accepts the whole set; if none does, profile 0's check says why
    for (int k = 0; k < int(plan.profiles.size()); ++k)
      if (accepted_by(k)) {
        profile = k;
        break;
      }
    for (auto& [name, dims] : shapes) plan::check_input_shape(plan, profile, name, dims);
    if (generic_only) continue;
    envs.push_back(evaluate_shapes(plan.network, shapes));
    kiln::plan::check_arena_fits(plan, envs.back().dims);
  }
  KernelStore store;
  std::vector<std::unique_ptr<Op>> ops = make_ops(plan, store, arch);
  int threads = std::clamp<int>(int(std::thread::hardware_concurrency()), 1, 16);
  Progress say = progress_or_log(progress);
  store.compile_into_cache(arch, threads, say, cache);
  int kernels = store.module_count();
  if (generic_only && !shape_sets.empty())
    say("the plan has data-dependent sizes: its engines run generic kernels only, so no specialized ones are compiled");
  for (size_t set = 0; set < envs.size(); ++set) {
    const InputShapes& shapes = shape_sets[set];
    std::vector<Step> steps;
    PrepareContext ctx{envs[set], steps, nullptr, nullptr, 0, 1, /*dry=*/true};
    for (const auto& op : ops) op->prepare(ctx);
    int added = 0, total = 0;
    for (const Step& step : steps)
      if (auto* k = std::get_if<KernelLaunch>(&step); k && k->specializable && k->handle >= 0) {
        added += store.warm_specialized(k->handle, k->params, arch, cache);
        ++total;
      }
    say(str("specialized for ", shape_key(shapes), ": ", total, " kernels, ", added, " new"));
    kernels += total;
  }
  return kernels;
}

}  // namespace kiln::runtime
