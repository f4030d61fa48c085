// Reference kernels of the control-flow family: If runs one branch, Loop and
// Scan run their body once per iteration, each run a recursive call of the
// interpreter on the subgraph (layout in kiln/ir/control_flow.h).
#include <algorithm>

#include "kernels.h"
#include "kiln/ir/control_flow.h"

namespace kiln::reference {

using ir::OpKind;

namespace {

bool truth(const Tensor& t) { return to_ints(t).at(0) != 0; }

// Element i of t's dim 0, without that dim (shares the bytes).
Tensor row(const Tensor& t, int64_t i) {
  Tensor r;
  r.dtype = t.dtype;
  r.dims.assign(t.dims.begin() + 1, t.dims.end());
  size_t bytes = size_t(ir::checked_numel(r.dims)) * dtype_size(t.dtype);
  r.data = t.data.slice(size_t(i) * bytes, bytes);
  return r;
}

// t with dim `axis` moved to the front, so that row() takes slices along it.
Tensor axis_first(const Tensor& t, int64_t axis) {
  std::vector<int64_t> perm{axis};
  for (int64_t d = 0; d < int64_t(t.dims.size()); ++d)
    if (d != axis) perm.push_back(d);
  return permute(t, perm);
}

// Output `output` when no iteration ran: its inferred dims, where a size only
// the iterations would tell (a data-dependent one) is 0.
Tensor empty_output(const KernelContext& c, size_t output) {
  std::vector<int64_t> dims;
  for (const ir::Dim& d : c.outputs.at(output).shape) dims.push_back(d.is_constant() ? d.constant() : 0);
  return from_doubles(c.out_dtype(output), dims, {});
}

// The slices stacked along a new dim `axis` as output `output`.
Tensor stack(const KernelContext& c, const std::vector<Tensor>& slices, int64_t axis, size_t output) {
  if (slices.empty()) return empty_output(c, output);
  const Tensor& first = slices.front();
  std::vector<std::byte> bytes;
  for (size_t t = 0; t < slices.size(); ++t) {
    if (slices[t].dims != first.dims || slices[t].dtype != first.dtype)
      c.error(ErrorCode::kShapeError, "output ", output, " gets a slice of ", dtype_name(slices[t].dtype),
              ir::shape_to_string(ir::shape_of(slices[t].dims)), " in iteration ", t, " but ", dtype_name(first.dtype),
              ir::shape_to_string(ir::shape_of(first.dims)), " in iteration 0; slices must agree");
    const std::byte* p = slices[t].data.data();
    bytes.insert(bytes.end(), p, p + slices[t].data.size());
  }
  Tensor stacked;
  stacked.dtype = first.dtype;
  stacked.dims = first.dims;
  stacked.dims.insert(stacked.dims.begin(), int64_t(slices.size()));
  stacked.data = Buffer::from_bytes(std::move(bytes));
  if (axis == 0) return stacked;
  std::vector<int64_t> perm;
  for (int64_t d = 1; d <= int64_t(first.dims.size()); ++d) {
    if (d - 1 == axis) perm.push_back(0);
    perm.push_back(d);
  }
  if (axis == int64_t(first.dims.size())) perm.push_back(0);
  return permute(stacked, perm);
}

void count_iteration(const KernelContext& c, int64_t i) {
  if (i >= ir::kMaxLoopIterations)
    c.error(ErrorCode::kUnsupported, "has run ", ir::kMaxLoopIterations,
            " iterations without ending, the most the reference interpreter runs of one node");
}

Outputs run_if(const KernelContext& c) {
  std::vector<Tensor> captured;
  for (size_t i = 1; i < c.inputs.size(); ++i) captured.push_back(c.in(i));
  return run_subgraph(c, truth(c.in(0)) ? "then_branch" : "else_branch", captured);
}

Outputs run_loop(const KernelContext& c) {
  ir::LoopLayout l = ir::loop_layout(c.node);
  int64_t trips = c.has(0) ? to_ints(c.in(0)).at(0) : INT64_MAX;
  bool go_on = c.has(1) ? truth(c.in(1)) : true;
  std::vector<Tensor> carried, captured;
  for (size_t i = 0; i < l.carried; ++i) carried.push_back(c.in(2 + i));
  for (size_t i = 0; i < l.captured; ++i) captured.push_back(c.in(2 + l.carried + i));
  std::vector<std::vector<Tensor>> slices(l.scan_outputs);
  for (int64_t i = 0; i < trips && go_on; ++i) {
    count_iteration(c, i);
    std::vector<Tensor> in{from_ints(DType::kInt64, {}, {i}), from_ints(DType::kBool, {}, {go_on ? 1 : 0})};
    in.insert(in.end(), carried.begin(), carried.end());
    in.insert(in.end(), captured.begin(), captured.end());
    std::vector<Tensor> out = run_subgraph(c, "body", in);
    if (c.has(1)) go_on = truth(out[0]);  // without a condition input the body's is ignored
    for (size_t k = 0; k < l.carried; ++k) carried[k] = std::move(out[1 + k]);
    for (size_t k = 0; k < l.scan_outputs; ++k) slices[k].push_back(std::move(out[1 + l.carried + k]));
  }
  Outputs result = std::move(carried);
  for (size_t k = 0; k < l.scan_outputs; ++k) result.push_back(stack(c, slices[k], 0, l.carried + k));
  return result;
}

// One unbatched scan over `inputs` (states, scan inputs, captured values).
std::vector<Tensor> scan_once(const KernelContext& c, const ir::ScanLayout& s, const std::vector<Tensor>& inputs) {
  std::vector<Tensor> states(inputs.begin(), inputs.begin() + ptrdiff_t(s.states));
  std::vector<Tensor> captured(inputs.begin() + ptrdiff_t(s.states + s.scan_inputs), inputs.end());
  std::vector<Tensor> sequences;
  int64_t length = -1;
  for (size_t j = 0; j < s.scan_inputs; ++j) {
    const Tensor& t = inputs[s.states + j];
    int64_t axis = s.batched ? 0 : normalize_axis(c, s.input_axes[j], t.dims.size());
    sequences.push_back(axis_first(t, axis));
    if (length >= 0 && sequences.back().dims[0] != length)
      c.error(ErrorCode::kShapeError, "scan input ", j, " has ", sequences.back().dims[0], " steps; scan input 0 has ", length);
    length = sequences.back().dims[0];
  }
  std::vector<std::vector<Tensor>> slices(s.scan_outputs);
  for (int64_t t = 0; t < length; ++t) {
    count_iteration(c, t);
    std::vector<Tensor> in = states;
    for (size_t j = 0; j < s.scan_inputs; ++j) in.push_back(row(sequences[j], s.input_reverse[j] ? length - 1 - t : t));
    in.insert(in.end(), captured.begin(), captured.end());
    std::vector<Tensor> out = run_subgraph(c, "body", in);
    for (size_t k = 0; k < s.states; ++k) states[k] = std::move(out[k]);
    for (size_t k = 0; k < s.scan_outputs; ++k) slices[k].push_back(std::move(out[s.states + k]));
  }
  std::vector<Tensor> result = std::move(states);
  for (size_t k = 0; k < s.scan_outputs; ++k) {
    if (s.output_reverse[k]) std::reverse(slices[k].begin(), slices[k].end());
    if (slices[k].empty()) {  // no steps: the inferred dims (batched: without the batch dim)
      Tensor empty = empty_output(c, s.states + k);
      if (s.batched) empty.dims.erase(empty.dims.begin());
      result.push_back(std::move(empty));
      continue;
    }
    int64_t axis = s.batched ? 0 : normalize_axis(c, s.output_axes[k], slices[k].front().dims.size() + 1);
    result.push_back(stack(c, slices[k], axis, s.states + k));
  }
  return result;
}

Outputs run_scan(const KernelContext& c) {
  ir::ScanLayout s = ir::scan_layout(c.node);
  std::vector<Tensor> inputs;
  for (size_t i = 0; i < c.inputs.size(); ++i) inputs.push_back(c.in(i));
  if (!s.batched) return scan_once(c, s, inputs);
  // Scan-8: one scan per batch entry, the results stacked back along dim 0.
  int64_t batch = inputs.front().dims.at(0);
  std::vector<std::vector<Tensor>> per_output(s.states + s.scan_outputs);
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<Tensor> in = inputs;
    for (size_t i = 0; i < s.states + s.scan_inputs; ++i) in[i] = row(inputs[i], b);
    std::vector<Tensor> out = scan_once(c, s, in);
    for (size_t k = 0; k < out.size(); ++k) per_output[k].push_back(std::move(out[k]));
  }
  Outputs result;
  for (size_t k = 0; k < per_output.size(); ++k) result.push_back(stack(c, per_output[k], 0, k));
  return result;
}

}  // namespace

Kernel control_flow_kernel(OpKind op) {
  switch (op) {
    case OpKind::kIf: return run_if;
    case OpKind::kLoop: return run_loop;
    case OpKind::kScan: return run_scan;
    default: return nullptr;
  }
}

}  // namespace kiln::reference
