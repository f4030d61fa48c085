// The control-flow family on the GPU. `kiln build` replaces an If whose
// condition it can tell by its branch and unrolls a Loop or Scan whose
// iterations it can count (builder/passes_control_flow.cpp); what is left
// decides by data what runs. `kiln build` builds each of its subgraphs like a
// network of its own (its memory plan and ranges in the node's attributes);
// here each becomes an engine state (ops registered in the engine's store, so
// compiled with the engine) and each context gets a context per subgraph.
// Enqueue stops at the node (readback.cpp) and runs it from the host: it
// reads the condition or trip count back, runs the subgraph's launches with
// its inputs and outputs bound to the node's tensors, and for a Loop reads
// the body's condition back after each iteration. Carried values alternate
// between two buffers; scan slices are read and written in place at their
// iteration's offset in the node's tensors.
#include <algorithm>
#include <cstring>

#include "context_state.h"
#include "kiln/error.h"
#include "kiln/ir/control_flow.h"
#include "kiln/ir/limits.h"
#include "kiln/ir/shape_inference.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

namespace {

std::vector<const char*> subgraph_names(OpKind op) {
  return op == OpKind::kIf ? std::vector<const char*>{"then_branch", "else_branch"} : std::vector<const char*>{"body"};
}

std::string node_text(const ir::Node& node) { return str("node '", node.name, "' (", ir::op_name(node.op), ")"); }

// The plan `kiln build` made of subgraph `attr`: its network, and its memory
// plan and ranges from the attributes beside it, checked as a loaded plan's are.
plan::Plan subgraph_plan(const plan::Plan& outer, const ir::Node& node, const std::string& attr) {
  std::string label = str(node_text(node), " subgraph '", attr, "'");
  if (!node.attrs.has(attr + "_memory"))
    fail(ErrorCode::kUnsupported, "it has no memory plan: `kiln build` builds the subgraphs of the control flow it leaves");
  plan::Plan p;
  p.network = *node.attrs.get_graph(attr);
  p.precision = outer.precision;
  std::vector<int64_t> memory = node.attrs.get_ints(attr + "_memory");
  std::vector<std::string> symbols = node.attrs.get_strings(attr + "_symbols");
  std::vector<int64_t> ranges = node.attrs.get_ints(attr + "_ranges");
  if (ranges.size() != 3 * symbols.size())
    fail(ErrorCode::kParseError, label, ": ", ranges.size(), " range bounds for ", symbols.size(), " symbols");
  ir::DimRanges profile;
  for (size_t i = 0; i < symbols.size(); ++i) {
    ir::DimRange r{ranges[3 * i], ranges[3 * i + 1], ranges[3 * i + 2]};
    if (r.min < 0 || r.min > r.opt || r.opt > r.max)
      fail(ErrorCode::kParseError, label, ": the range of '", symbols[i], "' is min ", r.min, ", opt ", r.opt, ", max ", r.max);
    p.network.set_dim_range(symbols[i], r);
    profile[symbols[i]] = r;
  }
  p.profiles = {profile};
  if (memory.empty()) fail(ErrorCode::kParseError, label, ": its memory plan is empty");
  p.arena_bytes = memory.back();
  memory.pop_back();
  p.arena_offset = std::move(memory);
  plan::verify(p, label);
  return p;
}

}  // namespace

std::unique_ptr<Op> make_control_flow(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why,
                                      int arch) {
  if (node.op == OpKind::kScan) {
    ir::ScanLayout l = ir::scan_layout(node);
    auto first = [](const std::vector<int64_t>& axes) { return std::all_of(axes.begin(), axes.end(), [](int64_t a) { return a == 0; }); };
    if (!l.batched && (!first(l.input_axes) || !first(l.output_axes))) {
      why = "a scan axis other than the first: `kiln build` moves it to the front";
      return nullptr;
    }
  }
  for (size_t o = 0; o < node.outputs.size(); ++o)
    if (node.outputs[o] == ir::kNoValue) {
      why = str("output ", o, " is left out, but its subgraph writes it; give it a name");
      return nullptr;
    }
  auto op = std::make_unique<ControlFlowOp>();
  for (const char* attr : subgraph_names(node.op)) {
    auto body = std::make_unique<EngineState>();
    try {
      body->plan = subgraph_plan(plan, node, attr);
    } catch (const Error& e) {
      why = str("subgraph '", attr, "': ", e.what());
      return nullptr;
    }
    body->arch = arch;
    for (const ir::Node& inner : body->plan.network.nodes()) {
      std::string reason;
      std::unique_ptr<Op> inner_op = make_op(body->plan, inner, store, reason, arch);
      if (!inner_op) {
        why = str("subgraph '", attr, "' ", node_text(inner), ": ", reason);
        return nullptr;
      }
      body->ops.push_back(std::move(inner_op));
    }
    plan_readbacks(*body);
    op->bodies.push_back(std::move(body));
  }
  return op;
}

GpuLowering describe_control_flow(OpKind op) {
  using K = GpuLowering::Kind;
  switch (op) {
    case OpKind::kIf:
      return {K::kKernel, "`kiln build` replaces an If whose condition it can tell by its branch; otherwise enqueue reads the "
                          "condition back (waiting for it) and runs the branch's launches, each branch built by `kiln build`"};
    case OpKind::kLoop:
      return {K::kKernel, "`kiln build` unrolls a Loop of a constant trip count (at most 64); otherwise enqueue reads the trip "
                          "count and the body's condition back (waiting for each) and runs the body's launches per iteration; "
                          "scan outputs at most the bound `kiln build` plans for"};
    case OpKind::kScan:
      return {K::kKernel, "`kiln build` unrolls a Scan of a static length (at most 64); otherwise enqueue runs the body's "
                          "launches per step, slices read and written in place (Scan-8's batch entries one after another)"};
    default: return {};
  }
}

void set_up_subgraphs(EngineState& e) {
  for (const auto& op : e.ops)
    if (auto* cf = dynamic_cast<ControlFlowOp*>(op.get()))
      for (const auto& body : cf->bodies) {
        body->config = e.config;
        body->device = e.device;
        body->sm_count = e.sm_count;
        body->arch = e.arch;
        upload_weights(*body);
        set_up_subgraphs(*body);
      }
}

namespace {

constexpr int64_t kAlign = 256;
// The iteration numbers' ring: a wait every this many iterations lets it be written again.
constexpr int64_t kIterationSlots = 1024;
// loop_memory: the iteration number, then a true condition, then the body's condition output.
constexpr int64_t kIterationAt = 0, kTrueAt = kAlign, kConditionAt = 2 * kAlign, kCarriedAt = 3 * kAlign;

int64_t aligned(int64_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

int64_t bytes_of(DType dtype, const std::vector<int64_t>& dims) { return ir::checked_numel(dims) * int64_t(dtype_size(dtype)); }

ir::SymbolBindings largest_of(const ir::Network& net) {
  ir::SymbolBindings largest;
  for (auto& [s, r] : net.dim_ranges()) largest[s] = r.max;
  return largest;
}

// The bytes `v` takes at the largest sizes of the plan's ranges: the memory planned for it.
int64_t room_of(const plan::Plan& plan, ir::ValueId v) {
  return bytes_of(plan.network.value(v).dtype, dims_at(plan, v, largest_of(plan.network)));
}

std::unique_ptr<ContextState> subgraph_context(ContextState& parent, const EngineState& body, OpKind op, size_t carried) {
  auto b = std::make_unique<ContextState>();
  b->engine = &body;
  b->owner = parent.owner ? parent.owner : &parent;
  const ir::Network& net = body.plan.network;
  b->arena = DeviceBuffer(size_t(body.plan.arena_bytes), "the activation arena of a subgraph");
  make_readback_memory(*b);
  size_t nv = net.values().size();
  b->bound.assign(nv, nullptr);
  b->pointers.assign(nv, nullptr);
  b->io.assign(nv, false);
  b->room.assign(nv, -1);
  for (ir::ValueId v : net.inputs()) b->io[size_t(v)] = true;
  for (ir::ValueId v : net.outputs()) b->io[size_t(v)] = true;
  if (op != OpKind::kIf) {
    // Carried value k is input `first + k` of the body, at most its size at the ranges' largest.
    size_t first = op == OpKind::kLoop ? 2 : 0;
    int64_t at = kCarriedAt;
    for (size_t k = 0; k < carried; ++k) {
      int64_t bytes = aligned(room_of(body.plan, net.inputs().at(first + k)));
      b->carried_offset.push_back(at);
      b->carried_bytes.push_back(bytes);
      at += 2 * bytes;
    }
    // A scan slice whose size data inside the body decides is written here, then copied into place.
    size_t slices_from = (op == OpKind::kLoop ? 1 : 0) + carried;  // after the condition (a Loop's) and the carried values
    for (size_t k = slices_from; k < net.outputs().size(); ++k) {
      int64_t bytes = aligned(room_of(body.plan, net.outputs()[k]));
      b->slice_offset.push_back(at);
      b->slice_bytes.push_back(bytes);
      at += bytes;
    }
    b->loop_memory = DeviceBuffer(size_t(at), "the iteration state of a Loop or Scan");
    fill_device(b->loop_memory.get(), 0, size_t(kCarriedAt), "zeroing the iteration number");
    fill_device(b->loop_memory.get() + kTrueAt, 1, 1, "the condition a running Loop's body reads");
    std::byte* host = nullptr;
    KILN_CUDA(cudaMallocHost(reinterpret_cast<void**>(&host), size_t(kIterationSlots) * sizeof(int64_t) + kAlign),
              "allocating pinned memory for iteration numbers");
    b->loop_host.reset(host);
  }
  make_subgraph_contexts(*b);
  return b;
}

}  // namespace

void make_subgraph_contexts(ContextState& c) {
  const EngineState& e = *c.engine;
  c.bodies.resize(e.ops.size());
  for (size_t n = 0; n < e.ops.size(); ++n) {
    auto* cf = dynamic_cast<const ControlFlowOp*>(e.ops[n].get());
    if (!cf) continue;
    const ir::Node& node = e.plan.network.nodes()[n];
    size_t carried = node.op == OpKind::kLoop ? ir::loop_layout(node).carried
                     : node.op == OpKind::kScan ? ir::scan_layout(node).states
                                                : 0;
    for (const auto& body : cf->bodies) c.bodies[n].push_back(subgraph_context(c, *body, node.op, carried));
  }
}

namespace {

// A tensor a subgraph reads or writes: its address and, for an input, its dims;
// for an output, the bytes there.
struct Bound {
  void* address = nullptr;
  std::vector<int64_t> dims;
  int64_t room = 0;
};

// One run of control-flow node `node` on context `c`.
class Run {
 public:
  Run(ContextState& c, size_t n, cudaStream_t stream, const ShapeEnv& env, ir::SymbolBindings& resolved)
      : c_(c), plan_(c.engine->plan), node_(plan_.network.nodes()[n]), bodies_(c.bodies[n]), stream_(stream), env_(env),
        resolved_(resolved) {}

  void run() {
    for (ir::ValueId v : node_.inputs)
      if (v != ir::kNoValue && env_.pending[size_t(v)])
        fail(ErrorCode::kUnsupported, node_text(node_), ": input '", plan_.network.value(v).name,
             "' has a size that depends on data the GPU runtime has not read back when the node runs");
    switch (node_.op) {
      case OpKind::kIf: run_if(); break;
      case OpKind::kLoop: run_loop(); break;
      case OpKind::kScan: run_scan(); break;
      default: fail(ErrorCode::kInternal, node_text(node_), " is not control flow");
    }
  }

 private:
  void* address(ir::ValueId v) const { return c_.pointers[size_t(v)]; }
  const std::vector<int64_t>& dims(ir::ValueId v) const { return env_.of(v); }
  DType dtype(ir::ValueId v) const { return plan_.network.value(v).dtype; }
  Bound input(ir::ValueId v) const { return {address(v), dims(v), 0}; }
  // The bytes at output `v`: its size where known before the run, else its bound's.
  int64_t room(ir::ValueId v) const { return env_.pending[size_t(v)] ? room_of(plan_, v) : bytes_of(dtype(v), dims(v)); }

  // The scalars of `inputs` (indices of node inputs): where the host has
  // them, those; else read back together, with one wait.
  std::vector<int64_t> read_scalars(const std::vector<size_t>& inputs) {
    std::vector<int64_t> values(inputs.size());
    std::vector<size_t> copied;
    for (size_t k = 0; k < inputs.size(); ++k) {
      ir::ValueId v = node_.inputs[inputs[k]];
      if (ir::checked_numel(dims(v)) != 1)
        fail(ErrorCode::kShapeError, node_text(node_), ": input ", inputs[k], " ('", plan_.network.value(v).name, "') is ",
             ir::shape_to_string(ir::shape_of(dims(v))), "; it must hold one value");
      if (auto known = host_ints(plan_, v, env_)) {
        values[k] = known->at(0);
        continue;
      }
      KILN_CUDA(cudaMemcpyAsync(c_.readback_host.get() + k * sizeof(int64_t), address(v), dtype_size(dtype(v)),
                                cudaMemcpyDeviceToHost, stream_),
                str("reading back input ", inputs[k], " of ", node_text(node_)));
      copied.push_back(k);
    }
    if (copied.empty()) return values;
    KILN_CUDA(cudaStreamSynchronize(stream_), str("waiting for the inputs that decide ", node_text(node_)));
    for (size_t k : copied) {
      const std::byte* at = c_.readback_host.get() + k * sizeof(int64_t);
      if (dtype(node_.inputs[inputs[k]]) == DType::kBool) {
        values[k] = *at != std::byte{0};
      } else {
        std::memcpy(&values[k], at, sizeof(int64_t));
      }
    }
    return values;
  }

  // Runs subgraph `b` (named `attr`) once; returns its outputs' dims.
  std::vector<std::vector<int64_t>> run_body(ContextState& b, const char* attr, const std::vector<Bound>& inputs,
                                             const std::vector<Bound>& outputs, const std::string& at = "") {
    const ir::Network& net = b.engine->plan.network;
    // An empty tensor may have no memory: any valid address stands in, nothing reads or writes it.
    void* stand_in = library_owner(c_).workspace.get();
    try {
      for (size_t i = 0; i < inputs.size(); ++i) {
        ir::ValueId v = net.inputs().at(i);
        const std::string& name = net.value(v).name;
        plan::check_input_shape(b.engine->plan, 0, name, inputs[i].dims);
        auto& slot = b.input_dims[name];
        if (slot != inputs[i].dims) {
          slot = inputs[i].dims;
          b.current = nullptr;
        }
        b.bound[size_t(v)] = inputs[i].address ? inputs[i].address : stand_in;
      }
      for (size_t o = 0; o < outputs.size(); ++o) {
        ir::ValueId v = net.outputs().at(o);
        b.bound[size_t(v)] = outputs[o].address ? outputs[o].address : stand_in;
        b.room[size_t(v)] = std::max<int64_t>(outputs[o].room, 0);
      }
      enqueue_data_dependent(b, stream_);
    } catch (const Error& e) {
      fail(e.code(), node_text(node_), ", subgraph '", attr, "'", at, ": ", e.what());
    }
    std::vector<std::vector<int64_t>> out;
    for (ir::ValueId v : net.outputs()) out.push_back(b.current->shapes.dims[size_t(v)]);
    return out;
  }

  // The dims subgraph `b` gives outputs `outputs` for these inputs, known
  // before it runs (where its scan slices go depends on them); nullopt for
  // one whose size depends on data inside the subgraph.
  std::vector<std::optional<std::vector<int64_t>>> output_dims_before(const ContextState& b, const char* attr,
                                                                      const std::vector<Bound>& inputs,
                                                                      const std::vector<size_t>& outputs) {
    const ir::Network& net = b.engine->plan.network;
    InputDims given;
    for (size_t i = 0; i < inputs.size(); ++i) given[net.value(net.inputs()[i]).name] = inputs[i].dims;
    ir::SymbolBindings none;
    ShapeEnv shapes;
    try {
      shapes = evaluate_shapes(net, given, &none);
    } catch (const Error& e) {
      fail(e.code(), node_text(node_), ", subgraph '", attr, "': ", e.what());
    }
    std::vector<std::optional<std::vector<int64_t>>> out;
    for (size_t o : outputs) {
      ir::ValueId v = net.outputs().at(o);
      out.push_back(shapes.pending[size_t(v)] ? std::nullopt : std::optional(shapes.of(v)));
    }
    return out;
  }

  // Scan output k's slices: each run's slice goes to slot `index` of the
  // node's output `o` (slots of the first slice's size). In place where its
  // size is known before the run; else into the body's scratch, copied to its
  // slot once the run has told the size.
  class Slices {
   public:
    Slices(Run& run, const ContextState& b, size_t k, size_t o) : run_(run), b_(b), k_(k), v_(run.node_.outputs[o]) {}

    Bound target(const std::optional<std::vector<int64_t>>& before, int64_t index) {
      in_place_ = before.has_value();
      if (!in_place_) return {b_.loop_memory.get() + b_.slice_offset[k_], {}, b_.slice_bytes[k_]};
      check(*before, index);
      int64_t slice = bytes_of(run_.dtype(v_), *before), offset = index * slice;
      return {static_cast<std::byte*>(run_.address(v_)) + offset, {}, slice};
    }

    void written(const std::vector<int64_t>& got, int64_t index) {
      if (in_place_) return;
      check(got, index);
      int64_t slice = bytes_of(run_.dtype(v_), got);
      if (slice)
        KILN_CUDA(cudaMemcpyAsync(static_cast<std::byte*>(run_.address(v_)) + index * slice, b_.loop_memory.get() + b_.slice_offset[k_],
                                  size_t(slice), cudaMemcpyDeviceToDevice, run_.stream_),
                  str("placing a scan slice of ", node_text(run_.node_)));
    }

    const std::optional<std::vector<int64_t>>& dims() const { return first_; }

   private:
    // Every slice has the first's dims, and its slot fits the output's memory.
    void check(const std::vector<int64_t>& d, int64_t index) {
      const std::string& name = run_.plan_.network.value(v_).name;
      if (!first_) first_ = d;
      if (d != *first_)
        fail(ErrorCode::kShapeError, node_text(run_.node_), ": scan output ", k_, " ('", name, "') gets a slice of ",
             ir::shape_to_string(ir::shape_of(d)), " after one of ", ir::shape_to_string(ir::shape_of(*first_)),
             "; slices must agree");
      int64_t slice = bytes_of(run_.dtype(v_), d), room = run_.room(v_);
      if ((index + 1) * slice > room)
        fail(ErrorCode::kShapeError, node_text(run_.node_), ": scan output ", k_, " ('", name, "') gets more slices than the ",
             slice ? room / slice : 0, " its memory was planned for; build the plan with a larger bound "
             "(--data-dependent-bound ", name, "=N)");
    }

    Run& run_;
    const ContextState& b_;
    size_t k_;
    ir::ValueId v_;
    bool in_place_ = true;
    std::optional<std::vector<int64_t>> first_;
  };

  // Output `o` of the node has `got` as its dims at this run: its
  // data-dependent sizes are bound to them, its other dims must agree.
  void bind_output(size_t o, const std::vector<int64_t>& got) {
    ir::ValueId v = node_.outputs[o];
    const ir::Value& value = plan_.network.value(v);
    auto wrong = [&] {
      fail(ErrorCode::kShapeError, node_text(node_), ": output ", o, " ('", value.name, "') is ",
           ir::shape_to_string(ir::shape_of(got)), " at this run, but the plan has ", ir::shape_to_string(value.shape), " for it");
    };
    if (got.size() != value.shape.size()) wrong();
    for (size_t d = 0; d < got.size(); ++d) {
      if (auto s = unbound_symbol(plan_.network, v, d, resolved_)) {
        bind_size(plan_, node_, v, *s, got[d], resolved_);
        continue;
      }
      ir::SymbolBindings known = env_.bindings;
      known.insert(resolved_.begin(), resolved_.end());
      auto size = value.shape[d].evaluate(known);
      if (size && *size != got[d]) wrong();
    }
  }

  // The dims the plan gives output `o` where nothing ran to make it: a size
  // only the iterations would tell is 0 (the reference interpreter's rule).
  std::vector<int64_t> dims_without_runs(size_t o) const {
    ir::SymbolBindings known = env_.bindings;
    known.insert(resolved_.begin(), resolved_.end());
    std::vector<int64_t> out;
    for (const ir::Dim& d : plan_.network.value(node_.outputs[o]).shape) out.push_back(d.evaluate(known).value_or(0));
    return out;
  }

  // Copies a final carried value (or a batch entry's state) into the node's output `o`, at byte `offset`.
  void copy_out(size_t o, const Bound& from, int64_t offset) {
    ir::ValueId v = node_.outputs[o];
    int64_t bytes = bytes_of(dtype(v), from.dims);
    if (offset + bytes > room(v))
      fail(ErrorCode::kShapeError, node_text(node_), ": output ", o, " ('", plan_.network.value(v).name, "') would be ",
           ir::shape_to_string(ir::shape_of(from.dims)), ", more than the bound its memory was planned for; build the plan "
           "with a larger bound (--data-dependent-bound ", plan_.network.value(v).name, "=N)");
    if (bytes)
      KILN_CUDA(cudaMemcpyAsync(static_cast<std::byte*>(address(v)) + offset, from.address, size_t(bytes),
                                cudaMemcpyDeviceToDevice, stream_),
                str("copying output ", o, " of ", node_text(node_)));
  }

  // Body input 0 of a Loop: the iteration number, copied from the pinned ring.
  void write_iteration(ContextState& b, int64_t i) {
    if (b.loop_host_next == kIterationSlots) {  // every slot's copy is done before one is written again
      KILN_CUDA(cudaStreamSynchronize(stream_), str("waiting for the iteration numbers of ", node_text(node_)));
      b.loop_host_next = 0;
    }
    auto* slot = reinterpret_cast<int64_t*>(b.loop_host.get()) + b.loop_host_next++;
    *slot = i;
    KILN_CUDA(cudaMemcpyAsync(b.loop_memory.get() + kIterationAt, slot, sizeof(int64_t), cudaMemcpyHostToDevice, stream_),
              str("writing the iteration number of ", node_text(node_)));
  }

  // The body's condition output after an iteration, read back.
  bool read_condition(ContextState& b) {
    std::byte* host = b.loop_host.get() + kIterationSlots * int64_t(sizeof(int64_t));
    KILN_CUDA(cudaMemcpyAsync(host, b.loop_memory.get() + kConditionAt, 1, cudaMemcpyDeviceToHost, stream_),
              str("reading back the condition of ", node_text(node_)));
    KILN_CUDA(cudaStreamSynchronize(stream_), str("waiting for the condition of ", node_text(node_)));
    return *host != std::byte{0};
  }

  void count_iteration(int64_t i) const {
    if (i >= ir::kMaxLoopIterations)
      fail(ErrorCode::kUnsupported, node_text(node_), ": has run ", ir::kMaxLoopIterations,
           " iterations without ending, the most kiln runs of one node");
  }

  // Where carried value k goes in iteration i: the buffer the previous iteration did not write.
  Bound carried_target(const ContextState& b, size_t k, int64_t i) const {
    return {b.loop_memory.get() + b.carried_offset[k] + (i % 2) * b.carried_bytes[k], {}, b.carried_bytes[k]};
  }

  void run_if() {
    bool taken = read_scalars({0}).at(0) != 0;
    std::vector<Bound> inputs, outputs;
    for (size_t i = 1; i < node_.inputs.size(); ++i) inputs.push_back(input(node_.inputs[i]));
    for (ir::ValueId v : node_.outputs) outputs.push_back({address(v), {}, room(v)});
    std::vector<std::vector<int64_t>> got = run_body(*bodies_.at(taken ? 0 : 1), taken ? "then_branch" : "else_branch", inputs, outputs);
    for (size_t o = 0; o < node_.outputs.size(); ++o) bind_output(o, got[o]);
  }

  void run_loop() {
    ir::LoopLayout l = ir::loop_layout(node_);
    ContextState& b = *bodies_.at(0);
    std::vector<size_t> read;
    bool has_trips = node_.inputs[0] != ir::kNoValue, has_condition = node_.inputs[1] != ir::kNoValue;
    if (has_trips) read.push_back(0);
    if (has_condition) read.push_back(1);
    std::vector<int64_t> values = read_scalars(read);
    int64_t trips = has_trips ? values[0] : INT64_MAX;
    bool go_on = has_condition ? values.back() != 0 : true;
    std::vector<Bound> carried;
    for (size_t k = 0; k < l.carried; ++k) carried.push_back(input(node_.inputs[2 + k]));
    std::vector<Bound> captured;
    for (size_t i = 2 + l.carried; i < node_.inputs.size(); ++i) captured.push_back(input(node_.inputs[i]));
    std::vector<size_t> slice_outputs;
    std::vector<Slices> slices;
    for (size_t k = 0; k < l.scan_outputs; ++k) {
      slice_outputs.push_back(1 + l.carried + k);
      slices.emplace_back(*this, b, k, l.carried + k);
    }
    int64_t i = 0;
    for (; i < trips && go_on; ++i) {
      count_iteration(i);
      write_iteration(b, i);
      std::vector<Bound> in{{b.loop_memory.get() + kIterationAt, {}, 0}, {b.loop_memory.get() + kTrueAt, {}, 0}};
      in.insert(in.end(), carried.begin(), carried.end());
      in.insert(in.end(), captured.begin(), captured.end());
      std::vector<Bound> out{{b.loop_memory.get() + kConditionAt, {}, 1}};
      for (size_t k = 0; k < l.carried; ++k) out.push_back(carried_target(b, k, i));
      auto before = output_dims_before(b, "body", in, slice_outputs);
      for (size_t k = 0; k < l.scan_outputs; ++k) out.push_back(slices[k].target(before[k], i));
      std::vector<std::vector<int64_t>> got = run_body(b, "body", in, out, str(", iteration ", i));
      for (size_t k = 0; k < l.carried; ++k) carried[k] = {out[1 + k].address, got[1 + k], 0};
      for (size_t k = 0; k < l.scan_outputs; ++k) slices[k].written(got[1 + l.carried + k], i);
      if (has_condition) go_on = read_condition(b);
    }
    for (size_t k = 0; k < l.carried; ++k) {
      copy_out(k, carried[k], 0);
      bind_output(k, carried[k].dims);
    }
    for (size_t k = 0; k < l.scan_outputs; ++k) {
      std::vector<int64_t> d = i > 0 ? *slices[k].dims() : dims_without_runs(l.carried + k);
      if (i > 0) d.insert(d.begin(), i);
      bind_output(l.carried + k, d);
    }
  }

  void run_scan() {
    ir::ScanLayout l = ir::scan_layout(node_);
    ContextState& b = *bodies_.at(0);
    size_t lead = l.batched ? 1 : 0;  // Scan-8's batch dim, before the scanned one
    int64_t batch = 1, length = 0;
    for (size_t j = 0; j < l.scan_inputs; ++j) {
      const std::vector<int64_t>& d = dims(node_.inputs[l.states + j]);
      if (d.size() < lead + 1) fail(ErrorCode::kShapeError, node_text(node_), ": scan input ", j, " has no dim to scan");
      if (j > 0 && d[lead] != length)
        fail(ErrorCode::kShapeError, node_text(node_), ": scan input ", j, " has ", d[lead], " steps; scan input 0 has ", length);
      length = d[lead];
      if (l.batched) batch = d[0];
    }
    auto without = [](std::vector<int64_t> d, size_t n) {
      d.erase(d.begin(), d.begin() + ptrdiff_t(std::min(n, d.size())));
      return d;
    };
    std::vector<Bound> captured;
    for (size_t i = l.states + l.scan_inputs; i < node_.inputs.size(); ++i) captured.push_back(input(node_.inputs[i]));
    std::vector<size_t> slice_outputs;
    std::vector<Slices> slices;
    for (size_t k = 0; k < l.scan_outputs; ++k) {
      slice_outputs.push_back(l.states + k);
      slices.emplace_back(*this, b, k, l.states + k);
    }
    std::vector<std::vector<int64_t>> finals;
    int64_t run = 0;
    for (int64_t e = 0; e < batch; ++e) {
      std::vector<Bound> states;
      for (size_t k = 0; k < l.states; ++k) {
        ir::ValueId v = node_.inputs[k];
        std::vector<int64_t> d = without(dims(v), lead);
        states.push_back({static_cast<std::byte*>(address(v)) + e * bytes_of(dtype(v), d), d, 0});
      }
      for (int64_t t = 0; t < length; ++t, ++run) {
        count_iteration(run);
        std::vector<Bound> in = states;
        for (size_t j = 0; j < l.scan_inputs; ++j) {
          ir::ValueId v = node_.inputs[l.states + j];
          std::vector<int64_t> d = without(dims(v), lead + 1);
          int64_t step = l.input_reverse[j] ? length - 1 - t : t;
          in.push_back({static_cast<std::byte*>(address(v)) + (e * length + step) * bytes_of(dtype(v), d), d, 0});
        }
        in.insert(in.end(), captured.begin(), captured.end());
        std::vector<Bound> out;
        for (size_t k = 0; k < l.states; ++k) out.push_back(carried_target(b, k, run));
        auto before = output_dims_before(b, "body", in, slice_outputs);
        auto slot = [&](size_t k) { return e * length + (l.output_reverse[k] ? length - 1 - t : t); };
        for (size_t k = 0; k < l.scan_outputs; ++k) out.push_back(slices[k].target(before[k], slot(k)));
        std::vector<std::vector<int64_t>> got =
            run_body(b, "body", in, out, l.batched ? str(", batch entry ", e, ", step ", t) : str(", step ", t));
        for (size_t k = 0; k < l.states; ++k) states[k] = {out[k].address, got[k], 0};
        for (size_t k = 0; k < l.scan_outputs; ++k) slices[k].written(got[l.states + k], slot(k));
      }
      std::vector<std::vector<int64_t>> state_dims;
      for (size_t k = 0; k < l.states; ++k) {
        copy_out(k, states[k], e * bytes_of(dtype(node_.inputs[k]), states[k].dims));
        state_dims.push_back(states[k].dims);
      }
      if (e == 0) finals = state_dims;
      else if (state_dims != finals)
        fail(ErrorCode::kShapeError, node_text(node_), ": batch entry ", e, " ends with states of other dims than batch entry 0");
    }
    for (size_t k = 0; k < l.states; ++k) {
      std::vector<int64_t> d = batch > 0 ? finals[k] : dims_without_runs(k);
      if (l.batched && batch > 0) d.insert(d.begin(), batch);
      bind_output(k, d);
    }
    for (size_t k = 0; k < l.scan_outputs; ++k) {
      if (run == 0) {
        bind_output(l.states + k, dims_without_runs(l.states + k));
        continue;
      }
      std::vector<int64_t> d = *slices[k].dims();
      d.insert(d.begin(), length);
      if (l.batched) d.insert(d.begin(), batch);
      bind_output(l.states + k, d);
    }
  }

  ContextState& c_;
  const plan::Plan& plan_;
  const ir::Node& node_;
  std::vector<std::unique_ptr<ContextState>>& bodies_;
  cudaStream_t stream_;
  const ShapeEnv& env_;
  ir::SymbolBindings& resolved_;
};

}  // namespace

void run_control_flow(ContextState& c, size_t node, cudaStream_t stream, const ShapeEnv& env, ir::SymbolBindings& resolved) {
  Run(c, node, stream, env, resolved).run();
}

}  // namespace kiln::runtime
