// The control-flow family: If, Loop and Scan, which run subgraphs held as
// graph attributes (layout in kiln/ir/control_flow.h). Their outputs' types
// come from inferring the subgraphs again with the node's actual inputs.
#include "kiln/ir/control_flow.h"

#include "family.h"

namespace kiln::ir {

namespace {

template <class... Args>
[[noreturn]] void node_error(const Node& node, ErrorCode code, const Args&... args) {
  fail(code, "node '", node.name, "' (", op_name(node.op), "): ", args...);
}

const Network& subgraph(const Ctx& c, const char* attr) {
  const Network* body = c.attrs().get_graph(attr);
  if (!body) c.error(ErrorCode::kInvalidModel, "graph attribute '", attr, "' is required");
  return *body;
}

// The subgraph's outputs for `inputs`, after checking them against its declared inputs.
std::vector<InferOutput> infer_body(const Ctx& c, const char* attr, const Network& body, const std::vector<InferInput>& inputs,
                                    size_t expected_outputs) {
  if (body.inputs().size() != inputs.size())
    c.error(ErrorCode::kInvalidModel, "subgraph '", attr, "' has ", body.inputs().size(), " inputs; the node gives it ", inputs.size());
  if (body.outputs().size() != expected_outputs)
    c.error(ErrorCode::kInvalidModel, "subgraph '", attr, "' has ", body.outputs().size(), " outputs; the node needs ", expected_outputs);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Value& declared = body.value(body.inputs()[i]);
    if (declared.dtype != inputs[i].dtype)
      c.error(ErrorCode::kTypeError, "subgraph '", attr, "' input ", i, " ('", declared.name, "') is ", dtype_name(declared.dtype),
              "; the node gives it ", dtype_name(inputs[i].dtype));
  }
  try {
    return infer_subgraph(body, inputs, [&] { return c.fresh(); });
  } catch (const Error& e) {
    c.error(e.code(), "in subgraph '", attr, "': ", e.what());
  }
}

InferInput typed(DType dtype, Shape shape) {
  static const std::string none;
  InferInput in;
  in.present = true;
  in.dtype = dtype;
  in.shape = std::move(shape);
  in.name = &none;
  return in;
}

// A value carried from iteration to iteration keeps the dims the body leaves
// alone; a dim it changes becomes a fresh symbol.
Shape carried_shape(const Ctx& c, const char* what, size_t i, const Shape& initial, const InferOutput& out, DType dtype) {
  if (out.dtype != dtype)
    c.error(ErrorCode::kTypeError, what, " ", i, " starts as ", dtype_name(dtype), " but the body makes it ", dtype_name(out.dtype));
  if (out.shape.size() != initial.size())
    c.error(ErrorCode::kUnsupported, what, " ", i, " starts with rank ", initial.size(), " but the body makes it rank ", out.shape.size(),
            " (kiln needs a rank that stays)");
  Shape shape = initial;
  for (size_t d = 0; d < shape.size(); ++d)
    if (shape[d] != out.shape[d]) shape[d] = c.fresh();
  return shape;
}

void infer_if(Ctx& c) {
  c.require_dtype(0, {DType::kBool});
  c.require_scalar(0);
  std::vector<InferInput> captured;
  for (size_t i = 1; i < c.num_inputs(); ++i) captured.push_back(c.input(i));
  const Network& then_branch = subgraph(c, "then_branch");
  const Network& else_branch = subgraph(c, "else_branch");
  size_t n = c.num_outputs();
  // A condition inference knows (a shape comparison) picks its branch's types.
  // The other branch is not inferred: exporters write branches that only fit
  // the shapes they are taken for (a Reshape to the other case's dims).
  if (auto cond = c.const_ints(0)) {
    bool taken = cond->at(0) != 0;
    const Network& other = taken ? else_branch : then_branch;
    if (other.inputs().size() != captured.size() || other.outputs().size() != n)
      c.error(ErrorCode::kInvalidModel, taken ? "else_branch" : "then_branch", " has ", other.inputs().size(), " inputs and ",
              other.outputs().size(), " outputs; the node gives it ", captured.size(), " and needs ", n);
    std::vector<InferOutput> out = infer_body(c, taken ? "then_branch" : "else_branch", taken ? then_branch : else_branch, captured, n);
    for (size_t i = 0; i < n; ++i) c.set(i, out[i].dtype, out[i].shape, out[i].known);
    return;
  }
  std::vector<InferOutput> a = infer_body(c, "then_branch", then_branch, captured, n);
  std::vector<InferOutput> b = infer_body(c, "else_branch", else_branch, captured, n);
  for (size_t i = 0; i < n; ++i) {
    if (a[i].dtype != b[i].dtype)
      c.error(ErrorCode::kTypeError, "output ", i, " is ", dtype_name(a[i].dtype), " in then_branch but ", dtype_name(b[i].dtype),
              " in else_branch");
    if (a[i].shape.size() != b[i].shape.size())
      c.error(ErrorCode::kUnsupported, "output ", i, " has rank ", a[i].shape.size(), " in then_branch but ", b[i].shape.size(),
              " in else_branch, and shape inference cannot decide the condition (it depends on data or on sizes "
              "only the run knows): a data-dependent rank; kiln needs ranks that follow from the model");
    Shape shape = a[i].shape;
    for (size_t d = 0; d < shape.size(); ++d)
      if (shape[d] != b[i].shape[d]) shape[d] = c.fresh();
    std::optional<std::vector<Dim>> known;
    if (a[i].known && b[i].known && *a[i].known == *b[i].known) known = a[i].known;
    c.set(i, a[i].dtype, std::move(shape), std::move(known));
  }
}

void infer_loop(Ctx& c) {
  const Network& body = subgraph(c, "body");
  LoopLayout l = loop_layout(c.node());
  if (c.has(0)) {
    c.require_dtype(0, {DType::kInt64});
    c.require_scalar(0);
  }
  if (c.has(1)) {
    c.require_dtype(1, {DType::kBool});
    c.require_scalar(1);
  }
  if (!c.has(0) && !c.has(1))
    c.error(ErrorCode::kUnsupported, "a Loop without a trip count and without a condition never ends");
  std::vector<InferInput> in{typed(DType::kInt64, {}), typed(DType::kBool, {})};
  for (size_t i = 2; i < c.num_inputs(); ++i) in.push_back(c.input(i));
  std::vector<InferOutput> out = infer_body(c, "body", body, in, 1 + l.carried + l.scan_outputs);
  if (out[0].dtype != DType::kBool) c.error(ErrorCode::kTypeError, "the body's condition output is ", dtype_name(out[0].dtype), "; expected bool");
  bool changed = false;
  for (size_t i = 0; i < l.carried; ++i) {
    Shape shape = carried_shape(c, "loop-carried value", i, c.shape(2 + i), out[1 + i], c.dtype(2 + i));
    changed = changed || shape != c.shape(2 + i);
    c.set(i, out[1 + i].dtype, std::move(shape));
  }
  // Without a condition input the body's condition is ignored and the loop runs M times;
  // with one it may stop early: a size that depends on data (at most M).
  auto trips = c.const_ints(0);
  Dim count = trips && !c.has(1) ? Dim(std::max<int64_t>(trips->at(0), 0)) : c.fresh();
  for (size_t k = 0; k < l.scan_outputs; ++k) {
    const InferOutput& slice = out[1 + l.carried + k];
    Shape shape{count};
    // Slices made from carried values whose shapes change have sizes only the run knows.
    for (const Dim& d : slice.shape) shape.push_back(changed && !d.is_constant() ? c.fresh() : d);
    c.set(l.carried + k, slice.dtype, std::move(shape));
  }
}

void infer_scan(Ctx& c) {
  const Network& body = subgraph(c, "body");
  ScanLayout s = scan_layout(c.node());
  std::optional<Dim> batch, length;
  std::vector<InferInput> in;
  for (size_t i = 0; i < s.states; ++i) {
    InferInput state = c.input(i);
    if (s.batched) {
      if (state.shape.empty()) c.error(ErrorCode::kShapeError, c.input_name(i), " needs a leading batch dim");
      if (batch) check_equal_dims(c, *batch, state.shape[0], "the batch dims of the inputs");
      batch = state.shape[0];
      state.shape.erase(state.shape.begin());
    }
    in.push_back(std::move(state));
  }
  for (size_t j = 0; j < s.scan_inputs; ++j) {
    size_t i = s.states + j;
    InferInput slice = c.input(i);
    int64_t rank = int64_t(slice.shape.size());
    if (s.batched) {
      if (rank < 2) c.error(ErrorCode::kShapeError, c.input_name(i), " needs a batch and a sequence dim");
      if (batch) check_equal_dims(c, *batch, slice.shape[0], "the batch dims of the inputs");
      batch = slice.shape[0];
    }
    int64_t axis = s.batched ? 1 : c.axis(s.input_axes[j], rank, "scan_input_axes entry");
    if (length) check_equal_dims(c, *length, slice.shape[size_t(axis)], "the scanned dims of the scan inputs");
    length = slice.shape[size_t(axis)];
    slice.shape.erase(slice.shape.begin() + axis);
    if (s.batched) slice.shape.erase(slice.shape.begin());
    slice.known = nullptr;
    slice.data = nullptr;
    in.push_back(std::move(slice));
  }
  for (size_t i = s.states + s.scan_inputs; i < c.num_inputs(); ++i) in.push_back(c.input(i));
  std::vector<InferOutput> out = infer_body(c, "body", body, in, s.states + s.scan_outputs);
  for (size_t i = 0; i < s.states; ++i) {
    Shape shape = carried_shape(c, "state", i, in[i].shape, out[i], in[i].dtype);
    if (batch) shape.insert(shape.begin(), *batch);
    c.set(i, out[i].dtype, std::move(shape));
  }
  for (size_t k = 0; k < s.scan_outputs; ++k) {
    const InferOutput& slice = out[s.states + k];
    Shape shape = slice.shape;
    int64_t axis = s.batched ? 0 : c.axis(s.output_axes[k], int64_t(shape.size()) + 1, "scan_output_axes entry");
    shape.insert(shape.begin() + axis, *length);
    if (batch) shape.insert(shape.begin(), *batch);
    c.set(s.states + k, slice.dtype, std::move(shape));
  }
}

}  // namespace

LoopLayout loop_layout(const Node& node) {
  int64_t captured = node.attrs.get_int("captured", 0);
  if (node.inputs.size() < 2 || captured < 0 || captured > int64_t(node.inputs.size()) - 2)
    node_error(node, ErrorCode::kInvalidModel, "captured ", captured, " does not fit its ", node.inputs.size(),
               " inputs (M, cond, the loop-carried values, then the captured values)");
  LoopLayout l;
  l.captured = size_t(captured);
  l.carried = node.inputs.size() - 2 - l.captured;
  if (node.outputs.size() < l.carried)
    node_error(node, ErrorCode::kInvalidModel, node.outputs.size(), " outputs for ", l.carried,
               " loop-carried values; each has a final value output");
  l.scan_outputs = node.outputs.size() - l.carried;
  return l;
}

ScanLayout scan_layout(const Node& node) {
  ScanLayout s;
  int64_t scans = node.attrs.get_int("num_scan_inputs", -1), captured = node.attrs.get_int("captured", 0);
  if (scans < 1) node_error(node, ErrorCode::kInvalidModel, "attribute num_scan_inputs (at least 1) is required");
  if (captured < 0 || scans + captured > int64_t(node.inputs.size()))
    node_error(node, ErrorCode::kInvalidModel, node.inputs.size(), " inputs; num_scan_inputs ", scans, " and captured ", captured,
               " need more");
  s.scan_inputs = size_t(scans);
  s.captured = size_t(captured);
  s.states = node.inputs.size() - s.scan_inputs - s.captured;
  if (node.outputs.size() < s.states)
    node_error(node, ErrorCode::kInvalidModel, node.outputs.size(), " outputs for ", s.states, " states; each has a final value output");
  s.scan_outputs = node.outputs.size() - s.states;
  s.batched = node.attrs.get_int("batched", 0) != 0;
  if (s.batched && (node.attrs.has("scan_input_axes") || node.attrs.has("scan_output_axes")))
    node_error(node, ErrorCode::kInvalidModel, "a batched Scan scans dim 1; it takes no axes attributes");
  auto per = [&](const char* attr, size_t n, bool direction) {
    std::vector<int64_t> v = node.attrs.get_ints(attr, std::vector<int64_t>(n, 0));
    if (v.size() != n) node_error(node, ErrorCode::kInvalidModel, "attribute ", attr, " has ", v.size(), " entries; expected ", n);
    if (direction)
      for (int64_t d : v)
        if (d != 0 && d != 1) node_error(node, ErrorCode::kInvalidModel, "attribute ", attr, " has ", d, "; directions are 0 or 1");
    return v;
  };
  s.input_axes = per("scan_input_axes", s.scan_inputs, false);
  s.output_axes = per("scan_output_axes", s.scan_outputs, false);
  for (int64_t d : per("scan_input_directions", s.scan_inputs, true)) s.input_reverse.push_back(d == 1);
  for (int64_t d : per("scan_output_directions", s.scan_outputs, true)) s.output_reverse.push_back(d == 1);
  return s;
}

std::vector<InferOutput> infer_subgraph(const Network& body, const std::vector<InferInput>& inputs, const std::function<Dim()>& fresh) {
  if (!body.finalized()) fail(ErrorCode::kInternal, "a subgraph must be finalized before inference");
  std::vector<std::optional<InferOutput>> types(body.values().size());
  std::vector<const TensorData*> data(body.values().size(), nullptr);
  for (size_t i = 0; i < inputs.size() && i < body.inputs().size(); ++i) {
    ValueId id = body.inputs()[i];
    types[size_t(id)] = InferOutput{inputs[i].dtype, inputs[i].shape,
                                    inputs[i].known ? std::optional<std::vector<Dim>>(*inputs[i].known) : std::nullopt};
    data[size_t(id)] = inputs[i].data;
  }
  for (size_t v = 0; v < body.values().size(); ++v)
    if (const Value& value = body.values()[v]; value.weight) {
      types[v] = InferOutput{value.dtype, value.shape, value.known};
      data[v] = &*value.weight;
    }
  for (const Node& node : body.nodes()) {
    std::vector<InferInput> in(node.inputs.size());
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      ValueId id = node.inputs[i];
      if (id == kNoValue) continue;
      const std::optional<InferOutput>& t = types[size_t(id)];
      if (!t) fail(ErrorCode::kInvalidModel, "node '", node.name, "' reads '", body.value(id).name, "', which has no value yet");
      in[i] = InferInput{true, t->dtype, t->shape, t->known ? &*t->known : nullptr, data[size_t(id)], &body.value(id).name};
    }
    std::vector<InferOutput> out = infer_node(node, in, fresh);
    for (size_t i = 0; i < node.outputs.size(); ++i)
      if (node.outputs[i] != kNoValue) types[size_t(node.outputs[i])] = std::move(out[i]);
  }
  std::vector<InferOutput> result;
  for (ValueId id : body.outputs()) {
    if (!types[size_t(id)]) fail(ErrorCode::kInvalidModel, "subgraph output '", body.value(id).name, "' has no value");
    result.push_back(*types[size_t(id)]);
  }
  return result;
}

OpSchema control_flow_schema(OpKind op) {
  using T = AttrType;
  // `kiln build` builds each subgraph for the GPU and keeps what a plan holds
  // besides its network beside it: the memory plan (an arena offset per value,
  // then the arena's size) and the ranges of its symbols (min, opt, max each).
  switch (op) {
    case OpKind::kIf:
      return {1, -1, 1, -1,
              {{"then_branch", T::kGraph}, {"else_branch", T::kGraph}, {"then_branch_memory", T::kInts},
               {"then_branch_symbols", T::kStrings}, {"then_branch_ranges", T::kInts}, {"else_branch_memory", T::kInts},
               {"else_branch_symbols", T::kStrings}, {"else_branch_ranges", T::kInts}}};
    case OpKind::kLoop:
      return {2, -1, 1, -1,
              {{"body", T::kGraph}, {"captured", T::kInt}, {"body_memory", T::kInts}, {"body_symbols", T::kStrings},
               {"body_ranges", T::kInts}}};
    case OpKind::kScan:
      return {1, -1, 1, -1,
              {{"body", T::kGraph}, {"num_scan_inputs", T::kInt}, {"scan_input_axes", T::kInts}, {"scan_input_directions", T::kInts},
               {"scan_output_axes", T::kInts}, {"scan_output_directions", T::kInts}, {"captured", T::kInt}, {"batched", T::kInt},
               {"body_memory", T::kInts}, {"body_symbols", T::kStrings}, {"body_ranges", T::kInts}}};
    default: return {0, 0, 0, 0, {}, false};
  }
}

void infer_control_flow(Ctx& c) {
  switch (c.node().op) {
    case OpKind::kIf: infer_if(c); break;
    case OpKind::kLoop: infer_loop(c); break;
    case OpKind::kScan: infer_scan(c); break;
    default: no_inference(c);
  }
}

}  // namespace kiln::ir
