// Internal interface of the reference kernels: one kernel lookup per op family
// and the helpers they share (dtype conversion, broadcasting, index walking).
#pragma once

#include <cstring>
#include <vector>

#include "kiln/error.h"
#include "kiln/ir/limits.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"

namespace kiln::reference {

struct KernelContext {
  const ir::Node& node;
  std::vector<const Tensor*> inputs;  // nullptr for an omitted optional input
  std::vector<ir::InferOutput> outputs;  // inferred dtype/shape of every output

  bool has(size_t i) const { return i < inputs.size() && inputs[i]; }
  const Tensor& in(size_t i) const {
    if (!has(i)) fail(ErrorCode::kInvalidModel, where(), ": input ", i, " is required");
    return *inputs[i];
  }
  const ir::Attributes& attrs() const { return node.attrs; }
  // Concrete dims of output i; throws if shape inference could not tell them.
  std::vector<int64_t> out_dims(size_t i) const;
  DType out_dtype(size_t i) const { return outputs.at(i).dtype; }
  std::string where() const { return str("node '", node.name, "' (", ir::op_name(node.op), ")"); }
  template <class... Args>
  [[noreturn]] void error(ErrorCode code, const Args&... args) const {
    fail(code, where(), ": ", args...);
  }
};

using Outputs = std::vector<Tensor>;
using Kernel = Outputs (*)(const KernelContext& c);

// Each family's kernel for `op` (src/reference/<family>.cpp); nullptr for an
// op of another family, or one the family's file has no case for.
Kernel elementwise_kernel(ir::OpKind op);
Kernel linalg_kernel(ir::OpKind op);
Kernel conv_kernel(ir::OpKind op);
Kernel pool_kernel(ir::OpKind op);
Kernel normalization_kernel(ir::OpKind op);
Kernel reduce_kernel(ir::OpKind op);
Kernel movement_kernel(ir::OpKind op);
Kernel generator_kernel(ir::OpKind op);
Kernel vision_kernel(ir::OpKind op);
Kernel recurrent_kernel(ir::OpKind op);
Kernel control_flow_kernel(ir::OpKind op);
Kernel text_kernel(ir::OpKind op);
Kernel ml_kernel(ir::OpKind op);

// Runs the subgraph in graph attribute `attr` of c's node on `inputs` (its
// inputs in order); errors name the node and the subgraph.
std::vector<Tensor> run_subgraph(const KernelContext& c, const char* attr, const std::vector<Tensor>& inputs);

// The Kernel of a function that makes one output.
template <Tensor (*Fn)(const KernelContext&)>
Outputs one_output(const KernelContext& c) {
  return {Fn(c)};
}

// ---- helpers -----------------------------------------------------------------

std::vector<double> to_doubles(const Tensor& t);
std::vector<int64_t> to_ints(const Tensor& t);  // integer and bool dtypes
Tensor from_doubles(DType dtype, std::vector<int64_t> dims, const std::vector<double>& values);
Tensor from_ints(DType dtype, std::vector<int64_t> dims, const std::vector<int64_t>& values);
Tensor with_dims(const Tensor& t, std::vector<int64_t> dims);  // shares the bytes
double scalar_double(const Tensor& t);
// Integers travel as int64 (to_ints); uint64 values of 2^63 and more read
// negative there, so their order is taken on the unsigned bits.
struct IntOrder {
  bool u64;
  explicit IntOrder(DType d) : u64(d == DType::kUInt64) {}
  bool less(int64_t a, int64_t b) const { return u64 ? uint64_t(a) < uint64_t(b) : a < b; }
  int64_t min(int64_t a, int64_t b) const { return less(b, a) ? b : a; }
  int64_t max(int64_t a, int64_t b) const { return less(a, b) ? b : a; }
};
// v as a value of float dtype `dtype` (float64 keeps it): a computation in
// that type rounds there, as ONNX's reference (numpy) does.
double rounded_to(DType dtype, double v);

using ir::strides_of;
// `axis` in [-rank, rank) as a non-negative index; an error naming the node otherwise.
int64_t normalize_axis(const KernelContext& c, int64_t axis, size_t rank);
// Strides of `in_dims` seen from the broadcast shape `out_dims` (0 along broadcast axes).
std::vector<int64_t> broadcast_strides(const std::vector<int64_t>& in_dims, const std::vector<int64_t>& out_dims);

// The spatial dims of [N, C, spatial...] (conv and pool).
inline std::vector<int64_t> spatial_of(const std::vector<int64_t>& dims) { return {dims.begin() + 2, dims.end()}; }
// A channels-last op ([N, spatial..., C]; a Conv's weight [M, kernel..., C/group]):
// the channels-first op between permutations.
Tensor run_channels_last(const KernelContext& c, Tensor (*channels_first)(const KernelContext&));

// Calls fn(index) for every multi-index of `dims` in row-major order.
template <class Fn>
void for_each_index(const std::vector<int64_t>& dims, Fn&& fn) {
  int64_t n = ir::checked_numel(dims);
  if (n == 0) return;
  std::vector<int64_t> idx(dims.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    fn(idx);
    for (size_t d = dims.size(); d-- > 0;) {
      if (++idx[d] < dims[d]) break;
      idx[d] = 0;
    }
  }
}

// Builds an output of `dims` whose element at each index copies input element
// src(index), or `fill` (one element's bytes) when src returns -1. A string
// tensor's elements are copied as strings (no fill: the ops with one take numbers).
template <class SrcFn>
Tensor remap(const Tensor& in, std::vector<int64_t> dims, SrcFn&& src, const std::byte* fill = nullptr) {
  if (is_string(in.dtype)) {
    Tensor t;
    t.dtype = in.dtype;
    t.strings.reserve(size_t(ir::checked_numel(dims)));
    for_each_index(dims, [&](const std::vector<int64_t>& idx) { t.strings.push_back(in.strings.at(size_t(src(idx)))); });
    t.dims = std::move(dims);
    return t;
  }
  size_t elem = dtype_size(in.dtype);
  std::vector<std::byte> bytes(size_t(ir::checked_numel(dims)) * elem);
  std::byte* out = bytes.data();
  const std::byte* base = in.data.data();
  for_each_index(dims, [&](const std::vector<int64_t>& idx) {
    int64_t s = src(idx);
    std::memcpy(out, s < 0 ? fill : base + size_t(s) * elem, elem);
    out += elem;
  });
  Tensor t;
  t.dtype = in.dtype;
  t.dims = std::move(dims);
  t.data = Buffer::from_bytes(std::move(bytes));
  return t;
}

}  // namespace kiln::reference
