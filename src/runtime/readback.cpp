// Data-dependent sizes and control flow: enqueue runs the launches up to a
// node whose output size depends on data, copies the few values that decide
// it (the count a NonZero, Compress, Unique or NonMaxSuppression leaves in the
// context's scratch; a Range's bounds, TopK's K, a Reshape's shape) into
// pinned host memory, waits for them (the one place enqueue waits for the
// GPU), binds the sizes, checks them against the bounds `kiln build` planned
// the memory for, and prepares and launches what follows. A control-flow node
// is such a point too: enqueue runs it there, its subgraphs on contexts of
// their own (ops/control_flow.cpp). An ImageDecoder is such a point too:
// enqueue copies its encoded stream to the host, waits, decodes it there and
// copies the pixels to the device; and so is a node on string tensors:
// enqueue runs its reference kernel on the host (host_steps.cpp). Engines
// with data-dependent sizes run generic kernels: a size that changes every
// call would make every call compile.
#include <algorithm>
#include <cstring>

#include "context_state.h"
#include "image/image_decoder.h"
#include "kiln/error.h"
#include "kiln/ir/limits.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::runtime {

namespace {

// Inputs read back before a node: the small tensors shape inference reads
// (shapes, K, depth, Range's bounds); larger ones never decide a size.
constexpr int64_t kMaxReadElements = 64;
constexpr size_t kReadSlotBytes = kMaxReadElements * sizeof(int64_t);

std::string describe(const ir::Network& net, const ir::Node& node, ir::ValueId v) {
  return str("tensor '", net.value(v).name, "' (node '", node.name, "', ", ir::op_name(node.op), ")");
}

}  // namespace

// Binds `symbol` to `size`, read back for `v`, within the bound the plan holds.
void bind_size(const plan::Plan& plan, const ir::Node& node, ir::ValueId v, const std::string& symbol, int64_t size,
               ir::SymbolBindings& resolved) {
  const ir::Network& net = plan.network;
  auto range = net.dim_ranges().find(symbol);
  if (range == net.dim_ranges().end())
    fail(ErrorCode::kInvalidArgument, describe(net, node, v), " has a size that depends on data without a bound in the plan");
  if (size < 0 || size > range->second.max)
    fail(ErrorCode::kShapeError, describe(net, node, v), ": its data-dependent size is ", size, " at this call, ",
         size < 0 ? std::string("below 0") : str("more than the bound ", range->second.max, " its memory was planned for"),
         "; build the plan with a larger bound (--data-dependent-bound ", net.value(v).name, "=N)");
  resolved[symbol] = size;
}

// A data-dependent symbol that is dim `i` of `v` and still unbound, if there is one.
std::optional<std::string> unbound_symbol(const ir::Network& net, ir::ValueId v, size_t i, const ir::SymbolBindings& resolved) {
  const ir::Dim& d = net.value(v).shape.at(i);
  std::set<std::string> symbols;
  d.collect_symbols(symbols);
  if (symbols.size() != 1 || d != ir::Dim::symbol(*symbols.begin())) return std::nullopt;
  const std::string& s = *symbols.begin();
  if (!net.data_dependent_symbols().count(s) || resolved.count(s)) return std::nullopt;
  return s;
}

namespace {

void wait_for(cudaStream_t stream, const ir::Node& node) {
  KILN_CUDA(cudaStreamSynchronize(stream), str("waiting for the values that size the outputs of node '", node.name, "'"));
}

// A node counted on the device (NonZero, Compress, Unique,
// NonMaxSuppression): its count, from the scratch its kernels wrote, sizes
// every data-dependent dim of its outputs. A Compress whose condition is true
// past the input's length leaves -1 - that position instead.
void read_count(ContextState& c, const ir::Node& node, cudaStream_t stream, ir::SymbolBindings& resolved) {
  const plan::Plan& plan = c.engine->plan;
  int64_t offset = readback_scratch_slot(plan, node).offset;
  KILN_CUDA(cudaMemcpyAsync(c.readback_host.get(), c.readback_scratch.get() + offset, sizeof(int64_t), cudaMemcpyDeviceToHost,
                            stream),
            str("reading back the count of node '", node.name, "'"));
  wait_for(stream, node);
  int64_t count = 0;
  std::memcpy(&count, c.readback_host.get(), sizeof count);
  if (count < 0 && node.op == ir::OpKind::kCompress)
    fail(ErrorCode::kInvalidArgument, "node '", node.name, "' (Compress): the condition is true at position ", -1 - count,
         ", past the input's length", node.attrs.has("axis") ? " along the axis" : " flattened");
  for (ir::ValueId v : node.outputs) {
    if (v == ir::kNoValue) continue;
    for (size_t d = 0; d < plan.network.value(v).shape.size(); ++d)
      if (auto s = unbound_symbol(plan.network, v, d, resolved)) bind_size(plan, node, v, *s, count, resolved);
  }
}

// Any other node: its small inputs, then its outputs' sizes by shape
// inference on those values (the reference interpreter's rules).
void read_inputs(ContextState& c, const ir::Node& node, cudaStream_t stream, ShapeEnv& env, ir::SymbolBindings& resolved) {
  const plan::Plan& plan = c.engine->plan;
  const ir::Network& net = plan.network;
  std::vector<std::pair<ir::ValueId, size_t>> copied;  // value, host offset
  size_t at = 0;
  for (ir::ValueId v : node.inputs) {
    if (v == ir::kNoValue || net.value(v).weight || env.pending[size_t(v)]) continue;
    int64_t n = ir::checked_numel(env.of(v));
    if (n > kMaxReadElements) continue;
    size_t bytes = size_t(n) * dtype_size(net.value(v).dtype);
    if (at + bytes > c.engine->readback_host_bytes)
      fail(ErrorCode::kInternal, "node '", node.name, "': the readback memory is too small for its inputs");
    if (bytes)
      KILN_CUDA(cudaMemcpyAsync(c.readback_host.get() + at, c.pointers[size_t(v)], bytes, cudaMemcpyDeviceToHost, stream),
                str("reading back '", net.value(v).name, "' for node '", node.name, "'"));
    copied.emplace_back(v, at);
    at += kReadSlotBytes;
  }
  wait_for(stream, node);
  std::vector<ir::TensorData> data(node.inputs.size());
  std::vector<std::vector<ir::Dim>> known(node.inputs.size());
  std::vector<ir::InferInput> in(node.inputs.size());
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    ir::ValueId v = node.inputs[i];
    if (v == ir::kNoValue) continue;
    const ir::Value& val = net.value(v);
    in[i] = ir::InferInput{true, val.dtype, ir::shape_of(env.of(v)), nullptr, val.weight ? &*val.weight : nullptr, &val.name};
    if (auto k = known_now(val, env)) {
      known[i].assign(k->begin(), k->end());
      in[i].known = &known[i];
    }
    auto it = std::find_if(copied.begin(), copied.end(), [&](auto& p) { return p.first == v; });
    if (it == copied.end()) continue;
    data[i].dtype = val.dtype;
    data[i].dims = env.of(v);
    data[i].data = Buffer::copy_of(c.readback_host.get() + it->second, size_t(data[i].numel()) * dtype_size(val.dtype));
    in[i].data = &data[i];
    if (is_integer(val.dtype) || val.dtype == DType::kBool) env.read[v] = ir::read_ints(data[i]);
  }
  int64_t unknown = 0;
  std::vector<ir::InferOutput> out =
      ir::infer_node(node, in, [&] { return ir::Dim::symbol(str("_unknown", unknown++)); });
  for (size_t o = 0; o < node.outputs.size(); ++o) {
    ir::ValueId v = node.outputs[o];
    if (v == ir::kNoValue) continue;
    if (!ir::shape_is_constant(out[o].shape))
      fail(ErrorCode::kUnsupported, describe(net, node, v), ": its size depends on data the GPU runtime does not read back "
           "(only inputs of at most ", kMaxReadElements, " elements are)");
    std::vector<int64_t> dims = ir::shape_constants(out[o].shape);
    for (size_t d = 0; d < dims.size() && d < net.value(v).shape.size(); ++d)
      if (auto s = unbound_symbol(net, v, d, resolved)) bind_size(plan, node, v, *s, dims[d], resolved);
  }
}

// Nodes that run on the host at their readback point, in place of launches:
// ImageDecoder (the codecs are host libraries; its GPU op launches nothing).
bool decoded_on_host(ir::OpKind op) { return op == ir::OpKind::kImageDecoder; }

// An ImageDecoder: its encoded stream copied to the host (pageable memory:
// the copy returns when done, after the launches before it), decoded, its
// height and width bound, and its pixels copied to its output (a copy from
// pageable memory returns once the pixels are staged, so they may go then).
void decode_on_host(ContextState& c, const ir::Node& node, cudaStream_t stream, const ShapeEnv& env,
                    ir::SymbolBindings& resolved) {
  const plan::Plan& plan = c.engine->plan;
  ir::ValueId in = node.inputs[0], out = node.outputs[0];
  image::PixelFormat format = image::PixelFormat::kRgb;
  image::parse_pixel_format(node.attrs.get_string("pixel_format", "RGB"), format);  // shape inference checked it
  std::vector<uint8_t> encoded(size_t(ir::checked_numel(env.of(in))));
  if (!encoded.empty())
    KILN_CUDA(cudaMemcpyAsync(encoded.data(), c.pointers[size_t(in)], encoded.size(), cudaMemcpyDeviceToHost, stream),
              str("reading back the encoded image of node '", node.name, "'"));
  wait_for(stream, node);
  image::Image decoded;
  try {
    decoded = image::decode(encoded, format);
  } catch (const Error& e) {
    fail(e.code(), "node '", node.name, "' (ImageDecoder): input 0 ('", plan.network.value(in).name, "'): ", e.what());
  }
  if (out == ir::kNoValue) return;
  const int64_t dims[] = {decoded.height, decoded.width};
  for (size_t d = 0; d < 2; ++d)
    if (auto s = unbound_symbol(plan.network, out, d, resolved)) bind_size(plan, node, out, *s, dims[d], resolved);
  // A plan may fix the output's dims (a model that declares them): the image must have them.
  std::vector<int64_t> want = dims_at(plan, out, resolved);
  if (want[0] != decoded.height || want[1] != decoded.width)
    fail(ErrorCode::kShapeError, "node '", node.name, "' (ImageDecoder): the image is ", decoded.height, " x ", decoded.width,
         " pixels; its output was sized ", want[0], " x ", want[1]);
  KILN_CUDA(cudaMemcpyAsync(c.pointers[size_t(out)], decoded.pixels.data(), decoded.pixels.size(), cudaMemcpyHostToDevice, stream),
            str("copying the decoded image of node '", node.name, "' to the device"));
}

// Nothing launches with a size not known yet: only a node counted on the
// device that ends the stage (its kernels bound what they write) may have one.
void check_sized(const ir::Network& net, const ShapeEnv& env, size_t begin, size_t end, const Readback* next) {
  for (size_t n = begin; n < end; ++n) {
    const ir::Node& node = net.nodes()[n];
    bool counted = next && next->after && next->node == n;
    for (const auto* list : {&node.inputs, &node.outputs})
      for (ir::ValueId v : *list)
        if (v != ir::kNoValue && env.pending[size_t(v)] && !(counted && list == &node.outputs))
          fail(ErrorCode::kUnsupported, describe(net, node, v), ": its size depends on data that the GPU runtime has not read "
               "back when the node runs (a size inside a dim expression)");
  }
}

// A subgraph's outputs are written at its node's outputs (or slices of them):
// each output sized by now must fit the room there before a stage writes it.
// A node counted on the device writes its output before its size is read
// back: such an output must fit there at its bound.
void check_room(const ContextState& c, const ShapeEnv& env) {
  if (c.room.empty()) return;
  const plan::Plan& plan = c.engine->plan;
  const ir::Network& net = plan.network;
  for (size_t k = 0; k < net.outputs().size(); ++k) {
    ir::ValueId v = net.outputs()[k];
    if (c.room[size_t(v)] < 0 || is_string(net.value(v).dtype)) continue;  // strings take no device memory
    ir::NodeId producer = net.value(v).producer;
    bool counted = producer >= 0 && counted_on_device(net.nodes()[size_t(producer)].op);
    if (env.pending[size_t(v)] && !counted) continue;
    ir::SymbolBindings largest;
    for (auto& [s, r] : net.dim_ranges()) largest[s] = r.max;
    std::vector<int64_t> dims = env.pending[size_t(v)] ? dims_at(plan, v, largest) : env.of(v);
    int64_t bytes = ir::checked_numel(dims) * int64_t(dtype_size(net.value(v).dtype));
    if (bytes > c.room[size_t(v)])
      fail(ErrorCode::kShapeError, "output ", k, " ('", net.value(v).name, "') is ", ir::shape_to_string(ir::shape_of(dims)),
           env.pending[size_t(v)] ? " at its bound, " : " at this run, ", bytes, " bytes, more than the ", c.room[size_t(v)],
           " bytes its node's output has for it at the bounds the plan was built with; build it with a larger bound "
           "(--data-dependent-bound)");
  }
}

}  // namespace

void plan_readbacks(EngineState& e) {
  const ir::Network& net = e.plan.network;
  // Counted nodes write their count even where the plan knows it (a Compress of a constant condition).
  e.readback_scratch_bytes = size_t(readback_scratch_bytes(e.plan));
  const std::set<std::string>& data = net.data_dependent_symbols();
  // Control flow whose outputs the host knows (shape arithmetic) is written as constants instead.
  auto control_flow = [&](size_t n) { return dynamic_cast<const ControlFlowOp*>(e.ops.at(n).get()) != nullptr; };
  // So do the nodes run on the host, even where the plan knows their sizes (an image that is a weight).
  auto host_step = [&](size_t n) { return dynamic_cast<const HostStepOp*>(e.ops.at(n).get()) != nullptr; };
  bool any_stop = false;
  for (size_t n = 0; n < e.ops.size(); ++n)
    any_stop = any_stop || control_flow(n) || host_step(n) || decoded_on_host(net.nodes()[n].op);
  if (data.empty() && !any_stop) return;
  std::vector<size_t> host_steps;
  std::set<std::string> sized;
  size_t most_inputs = 0;
  for (size_t n = 0; n < net.nodes().size(); ++n) {
    const ir::Node& node = net.nodes()[n];
    if (control_flow(n)) {
      // Its run reads its condition (a Loop: and its trip count) back and sizes its outputs.
      for (ir::ValueId v : node.outputs)
        if (v != ir::kNoValue)
          for (const ir::Dim& d : net.value(v).shape) d.collect_symbols(sized);
      if (e.data_dependent.empty()) e.data_dependent = str("node '", node.name, "' (", ir::op_name(node.op), ") decides by data what runs");
      e.readbacks.push_back({n, false, true});
      most_inputs = std::max<size_t>(most_inputs, 2);
      continue;
    }
    if (host_step(n)) {
      // Its run reads its inputs back whole and sizes its outputs from what the reference kernel made.
      for (ir::ValueId v : node.outputs)
        if (v != ir::kNoValue)
          for (const ir::Dim& d : net.value(v).shape) d.collect_symbols(sized);
      if (e.host_step.empty()) e.host_step = str("node '", node.name, "' (", ir::op_name(node.op), ") runs on the host inside the GPU engine");
      e.readbacks.push_back({n, false, false, true});
      host_steps.push_back(n);
      continue;
    }
    bool fresh = false, host = decoded_on_host(node.op);
    for (ir::ValueId v : node.outputs) {
      if (v == ir::kNoValue) continue;
      std::set<std::string> symbols;
      for (const ir::Dim& d : net.value(v).shape) d.collect_symbols(symbols);
      for (const std::string& s : symbols)
        if (data.count(s) && sized.insert(s).second) {
          fresh = true;
          if (e.data_dependent.empty()) e.data_dependent = str(describe(net, node, v), " has a size that depends on data");
        }
    }
    if (host) {
      if (e.data_dependent.empty()) e.data_dependent = str("node '", node.name, "' (", ir::op_name(node.op), ") runs on the host");
      e.readbacks.push_back({n, false, false, true});
      continue;
    }
    if (!fresh) continue;
    bool after = counted_on_device(node.op);
    e.readbacks.push_back({n, after});
    if (!after) most_inputs = std::max(most_inputs, node.inputs.size());
  }
  e.readback_host_bytes = std::max(most_inputs * kReadSlotBytes, sizeof(int64_t));
  e.host_staging_bytes = host_staging_bytes(e.plan, host_steps);
}

void make_readback_memory(ContextState& c) {
  const EngineState& e = *c.engine;
  if (e.readback_scratch_bytes)
    c.readback_scratch = DeviceBuffer(e.readback_scratch_bytes, "the readback scratch of counts and their work areas");
  if (e.readbacks.empty()) return;
  std::byte* host = nullptr;
  KILN_CUDA(cudaMallocHost(reinterpret_cast<void**>(&host), e.readback_host_bytes),
            "allocating pinned memory for data-dependent sizes");
  c.readback_host.reset(host);
  if (!e.host_step.empty()) {
    c.strings.resize(e.plan.network.values().size());
    KILN_CUDA(cudaEventCreateWithFlags(&c.staging_uploaded, cudaEventDisableTiming), "creating the context's event");
  }
  if (e.host_staging_bytes) {
    std::byte* staging = nullptr;
    KILN_CUDA(cudaMallocHost(reinterpret_cast<void**>(&staging), e.host_staging_bytes),
              "allocating pinned memory for the numeric tensors of host steps");
    c.host_staging.reset(staging);
  }
}

void enqueue_data_dependent(ContextState& c, cudaStream_t stream) {
  const EngineState& e = *c.engine;
  const ir::Network& net = e.plan.network;
  c.current = nullptr;  // until this call's sizes are all known
  resolve_pointers(c);
  ir::SymbolBindings resolved;
  ShapeEnv env = evaluate_shapes(net, c.input_dims, &resolved);
  std::string input_key = shape_key(c.input_dims);
  // Sizes read back may change every call, and each new one would compile:
  // such stages run generic kernels. Control flow alone keeps its stages'
  // shapes as steady as the input shapes, and the context's strategy.
  KernelSpecialization strategy =
      net.data_dependent_symbols().empty() ? library_owner(c).specialization : KernelSpecialization::kNone;
  size_t begin = 0;
  for (size_t r = 0;; ++r) {
    bool last = r == e.readbacks.size();
    size_t end = last ? net.nodes().size() : e.readbacks[r].node + (e.readbacks[r].after ? 1 : 0);
    check_room(c, env);
    // A stage is prepared once per input shapes and values read back before it.
    std::string key = str(input_key, "#", r);
    for (auto& [symbol, size] : resolved) key += str(",", symbol, "=", size);
    for (auto& [v, values] : env.read) {
      key += str(",", net.value(v).name, "=");
      for (int64_t x : values) key += str(x, ";");
    }
    check_sized(net, env, begin, end, last ? nullptr : &e.readbacks[r]);
    PreparedShape& stage = prepared_launches(c, key, env, begin, end, strategy);
    if (stage.pending) swap_in_ready_kernels(stage);
    ++stage.calls;
    for (const Step& step : stage.steps) launch_step(c, step, stream);
    if (last) {
      c.current = &stage;  // tensor_shape reads this call's sizes from it
      return;
    }
    const ir::Node& node = net.nodes()[e.readbacks[r].node];
    if (e.readbacks[r].control_flow) run_control_flow(c, e.readbacks[r].node, stream, env, resolved);
    else if (e.readbacks[r].host && decoded_on_host(node.op)) decode_on_host(c, node, stream, env, resolved);
    else if (e.readbacks[r].host) run_host_step(c, e.readbacks[r].node, stream, env, resolved);
    else if (e.readbacks[r].after) read_count(c, node, stream, resolved);
    else read_inputs(c, node, stream, env, resolved);
    auto read = std::move(env.read);
    env = evaluate_shapes(net, c.input_dims, &resolved);
    env.read = std::move(read);
    begin = e.readbacks[r].control_flow || e.readbacks[r].host ? end + 1 : end;
  }
}

}  // namespace kiln::runtime
