#include "kiln/module.h"

#include <algorithm>
#include <list>
#include <set>
#include <variant>

#include "cuda_util.h"
#include "graphs/native_graph.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/logging.h"
#include "module_policy.h"

namespace kiln::module {

namespace {

constexpr size_t kShapeKeys = 8;  // input-shape keys a module keeps memory and a graph for (LRU)

struct EngineSegment {
  std::string name;
  std::shared_ptr<runtime::Engine> engine;
  std::unique_ptr<runtime::ExecutionContext> context;
  std::vector<std::pair<std::string, std::string>> inputs, outputs;  // engine tensor, module tensor
};

using Segment = std::variant<EngineSegment, HostSegment>;

// Memory and the module graph of one input-shape key.
struct ShapeSlot {
  std::string key;
  std::map<std::string, DeviceTensor, std::less<>> tensors;  // every module tensor but unstaged inputs
  std::vector<runtime::DeviceBuffer> memory;
  runtime::graphs::NativeGraph graph;
  int runs = 0;
};

std::string key_of(const std::map<std::string, DeviceTensor>& inputs) {
  std::string key;
  for (auto& [name, t] : inputs) {
    key += name + ":" + std::string(dtype_name(t.dtype));
    for (int64_t d : t.dims) key += "x" + std::to_string(d);
    key += ",";
  }
  return key;
}

}  // namespace

struct Module::State {
  std::vector<std::string> inputs, outputs;
  CudagraphsMode mode;
  std::vector<Segment> segments;
  std::list<ShapeSlot> slots;  // most recently used first
  std::set<std::string> warned;
  std::function<void(const std::string&)> warn = [](const std::string& w) { kiln::log(Severity::kWarning, w); };
  bool capturing = false;            // the module's own capture is open
  bool stream_is_captured = false;   // this run's stream is being captured by the caller
  Stats stats;
  runtime::graphs::GraphCounters counters;

  // Tensors of the current run: slot memory plus, outside whole_graph, the caller's inputs.
  std::map<std::string, DeviceTensor, std::less<>> current;

  const DeviceTensor& tensor(const std::string& name, const std::string& segment) const {
    auto it = current.find(name);
    if (it == current.end())
      fail(ErrorCode::kInvalidArgument, "segment '", segment, "' reads module tensor '", name,
           "', which no module input or earlier segment provides");
    return it->second;
  }
  std::vector<DeviceTensor> tensors(const std::vector<std::string>& names, const std::string& segment) const {
    std::vector<DeviceTensor> out;
    for (auto& n : names) out.push_back(tensor(n, segment));
    return out;
  }

  // Sets an engine's input shapes and all its addresses from the current tensors.
  void bind(EngineSegment& e) {
    // e.inputs and e.outputs follow the network's order, so a position is the
    // context's io index: no name lookups in the engine per run.
    int index = 0;
    for (auto& [engine_name, module_name] : e.inputs) {
      const DeviceTensor& t = tensor(module_name, e.name);
      e.context->set_input_shape(index, t.dims);
      e.context->set_tensor_address(index++, t.data);
    }
    for (auto& [engine_name, module_name] : e.outputs) e.context->set_tensor_address(index++, tensor(module_name, e.name).data);
  }

  // Shapes of every segment's outputs for this key, allocated once (outside captures).
  ShapeSlot& slot_for(const std::map<std::string, DeviceTensor>& inputs, bool staged, cudaStream_t stream) {
    std::string key = key_of(inputs) + (staged ? "staged" : "");
    for (auto it = slots.begin(); it != slots.end(); ++it)
      if (it->key == key) {
        slots.splice(slots.begin(), slots, it);
        return slots.front();
      }
    if (stream_is_captured)
      fail(ErrorCode::kInvalidArgument, "the module sees new input shapes (", key_of(inputs),
           ") while its stream is being captured; run it once at these shapes before capturing");
    ShapeSlot slot;
    slot.key = key;
    auto allocate = [&](const std::string& name, DType dtype, const std::vector<int64_t>& dims) {
      size_t bytes = std::max<size_t>(size_t(ir::checked_numel(dims)) * dtype_size(dtype), 256);
      slot.memory.emplace_back(bytes, "module tensor " + name);
      slot.tensors[name] = DeviceTensor{slot.memory.back().get(), dtype, dims};
      current[name] = slot.tensors[name];
    };
    current.clear();
    for (auto& [name, t] : inputs) {
      if (staged) allocate(name, t.dtype, t.dims);
      else current[name] = t;
    }
    for (Segment& segment : segments) {
      if (auto* e = std::get_if<EngineSegment>(&segment)) {
        for (auto& [engine_name, module_name] : e->inputs) e->context->set_input_shape(engine_name, tensor(module_name, e->name).dims);
        const ir::Network& net = e->engine->plan().network;
        for (auto& [engine_name, module_name] : e->outputs)
          allocate(module_name, net.value(*net.find_value(engine_name)).dtype, e->context->tensor_shape(engine_name));
      } else {
        auto& h = std::get<HostSegment>(segment);
        auto shapes = h.output_shapes(tensors(h.inputs, h.name));
        if (shapes.size() != h.outputs.size())
          fail(ErrorCode::kInvalidArgument, "host segment '", h.name, "' gave ", shapes.size(), " output shapes for ",
               h.outputs.size(), " outputs");
        for (size_t i = 0; i < shapes.size(); ++i) allocate(h.outputs[i], shapes[i].first, shapes[i].second);
      }
    }
    slots.push_front(std::move(slot));
    if (slots.size() > kShapeKeys) {
      slots.pop_back();
      forget_module_graphs(stream);
    }
    return slots.front();
  }

  // The engines pin the specialized kernels recorded into module graphs; to
  // bound what stays loaded, dropping one key's graph drops them all (each
  // key is captured again at its next run) and lets the engines unload.
  void forget_module_graphs(cudaStream_t stream) {
    bool any = false;
    for (ShapeSlot& slot : slots) {
      any = any || slot.graph.ready();
      slot.graph.reset();
    }
    if (!any && counters.captures == 0) return;
    for (Segment& segment : segments)
      if (auto* e = std::get_if<EngineSegment>(&segment)) e->context->release_captured_kernels(stream);
  }

  void run_segments(cudaStream_t stream) {
    for (Segment& segment : segments) {
      if (auto* e = std::get_if<EngineSegment>(&segment)) {
        bind(*e);
        e->context->enqueue(stream);
      } else {
        auto& h = std::get<HostSegment>(segment);
        h.enqueue(stream, tensors(h.inputs, h.name), tensors(h.outputs, h.name));
      }
    }
  }

  void warn_once(const std::string& w) {
    if (!warned.insert(w).second) return;
    stats.warnings.push_back(w);
    if (warn) warn(w);
  }
};

Module::Module(std::vector<std::string> inputs, std::vector<std::string> outputs, CudagraphsMode mode)
    : state_(std::make_unique<State>()) {
  state_->inputs = std::move(inputs);
  state_->outputs = std::move(outputs);
  state_->mode = mode;
}

Module::~Module() = default;

void Module::add_engine(const std::string& name, std::shared_ptr<runtime::Engine> engine,
                        const std::map<std::string, std::string>& rename) {
  EngineSegment e;
  e.name = name;
  e.context = engine->create_context();
  const ir::Network& net = engine->plan().network;
  auto module_name = [&](const std::string& t) {
    auto it = rename.find(t);
    return it == rename.end() ? t : it->second;
  };
  for (ir::ValueId id : net.inputs()) e.inputs.emplace_back(net.value(id).name, module_name(net.value(id).name));
  for (ir::ValueId id : net.outputs()) e.outputs.emplace_back(net.value(id).name, module_name(net.value(id).name));
  e.engine = std::move(engine);
  state_->segments.push_back(std::move(e));
  state_->slots.clear();
}

void Module::add_host(HostSegment segment) {
  if (!segment.enqueue || !segment.output_shapes)
    fail(ErrorCode::kInvalidArgument, "host segment '", segment.name, "' needs enqueue and output_shapes");
  state_->segments.push_back(std::move(segment));
  state_->slots.clear();
}

void Module::set_cudagraphs_mode(CudagraphsMode mode) {
  if (state_->capturing) fail(ErrorCode::kInvalidArgument, "the cudagraphs mode cannot change while the module's capture is open");
  state_->mode = mode;
}

CudagraphsMode Module::cudagraphs_mode() const { return state_->mode; }
void Module::on_warning(std::function<void(const std::string&)> sink) { state_->warn = std::move(sink); }
const Module::Stats& Module::stats() const { return state_->stats; }

const runtime::ExecutionContext& Module::context(const std::string& engine_segment) const {
  for (const Segment& s : state_->segments)
    if (auto* e = std::get_if<EngineSegment>(&s); e && e->name == engine_segment) return *e->context;
  fail(ErrorCode::kInvalidArgument, "the module has no engine segment '", engine_segment, "'");
}

std::vector<DeviceTensor> Module::run(const std::map<std::string, DeviceTensor>& inputs, cudaStream_t stream) {
  State& s = *state_;
  for (const std::string& name : s.inputs)
    if (!inputs.count(name)) fail(ErrorCode::kInvalidArgument, "module input '", name, "' is not given");
  for (auto& [name, t] : inputs)
    if (std::find(s.inputs.begin(), s.inputs.end(), name) == s.inputs.end())
      fail(ErrorCode::kInvalidArgument, "'", name, "' is not an input of the module");
  ++s.stats.runs;
  s.stream_is_captured = runtime::graphs::stream_is_capturing(stream);

  // The caller is capturing: every segment records into its capture, nothing of ours is captured.
  bool whole = s.mode == CudagraphsMode::kWholeGraph && !s.stream_is_captured;
  ShapeSlot& slot = s.slot_for(inputs, whole, stream);
  s.current.clear();
  for (auto& [name, t] : slot.tensors) s.current[name] = t;
  if (!whole)
    for (auto& [name, t] : inputs) s.current[name] = t;

  // The behavior matrix, decided before anything is captured.
  std::vector<EngineFacts> facts;
  std::vector<EngineSegment*> engines;
  for (Segment& segment : s.segments)
    if (auto* e = std::get_if<EngineSegment>(&segment)) {
      s.bind(*e);
      EngineFacts f;
      f.name = e->name;
      f.native_graphs = e->engine->config().cuda_graph_strategy == runtime::CudaGraphStrategy::kWholeGraphCapture;
      f.lazy = e->engine->config().dynamic_shapes_kernel_specialization_strategy == runtime::KernelSpecialization::kLazy;
      f.dynamic_inputs = e->engine->has_dynamic_inputs();
      f.capture_obstacle = e->context->capture_obstacle(stream);
      f.stream_capturable = f.capture_obstacle.empty();
      facts.push_back(f);
      engines.push_back(e);
    }
  ModulePlan plan = plan_module(s.mode, facts);
  if (!plan.error.empty()) fail(ErrorCode::kInvalidArgument, plan.error);
  for (const std::string& w : plan.warnings) s.warn_once(w);
  for (size_t i = 0; i < engines.size(); ++i)
    engines[i]->context->set_cuda_graph_strategy(plan.engine_native[i] && !plan.outer_capture
                                                     ? runtime::CudaGraphStrategy::kWholeGraphCapture
                                                     : runtime::CudaGraphStrategy::kDisabled);

  if (s.stream_is_captured) {
    ++s.stats.into_caller_capture;
    s.run_segments(stream);
  } else if (!whole) {
    ++s.stats.direct_runs;
    s.run_segments(stream);
  } else {
    for (auto& [name, t] : inputs)  // into the static staging buffers the graph reads
      KILN_CUDA(cudaMemcpyAsync(slot.tensors[name].data, t.data, size_t(ir::checked_numel(t.dims)) * dtype_size(t.dtype),
                                cudaMemcpyDeviceToDevice, stream),
                "staging module input '" + name + "'");
    if (slot.runs == 0) {  // warm-up: direct, so libraries settle before the capture
      ++s.stats.direct_runs;
      s.run_segments(stream);
    } else if (!slot.graph.ready()) {
      for (EngineSegment* e : engines) e->context->prepare();  // an engine may have forgotten this key's shapes
      s.capturing = true;
      std::string failure = slot.graph.capture(stream, [&](cudaStream_t st) { s.run_segments(st); }, s.counters);
      s.capturing = false;
      if (!failure.empty()) fail(ErrorCode::kDevice, "cudagraphs mode whole_graph: capturing the module failed: ", failure);
      ++s.stats.outer_captures;
      KILN_CUDA(slot.graph.launch(stream), "launching the module graph");
    } else {
      ++s.stats.outer_replays;
      KILN_CUDA(slot.graph.launch(stream), "launching the module graph");
    }
  }
  ++slot.runs;
  std::vector<DeviceTensor> out;
  for (const std::string& name : s.outputs) out.push_back(s.tensor(name, "the module outputs"));
  return out;
}

}  // namespace kiln::module
