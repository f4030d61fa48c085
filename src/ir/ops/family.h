// Internal to the IR: what the op family files (src/ir/ops/<family>.cpp)
// share. Each family file holds its ops' schemas (arity, attributes) and
// shape inference; schema.cpp and shape_inference.cpp dispatch to them by
// family_of, so no switch anywhere lists every op kind.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "kiln/error.h"
#include "kiln/ir/limits.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::ir {

inline constexpr int64_t kMaxKnownElements = 64;  // contents tracked only for shape-sized int tensors

// The type of fixed-size elements a kiln dtype code in an attribute names; nullopt for strings and codes of no type.
inline std::optional<DType> numeric_dtype_from_code(int64_t code) {
  std::optional<DType> dtype = dtype_from_code(code);
  if (dtype && is_string(*dtype)) return std::nullopt;
  return dtype;
}

// ---- schemas -------------------------------------------------------------------

struct AttrSpec {
  const char* name;
  AttrType type;
  // Float attributes must be finite (kernels print them into generated source
  // and compute with them); a few bounds may be infinite. NaN never.
  bool may_be_infinite = false;
  // Data the GPU never prints into source (LabelEncoder's float keys and values): NaN and infinities too.
  bool any_value = false;
};

struct OpSchema {
  int min_inputs = 1, max_inputs = 1;  // max -1: variadic
  int min_outputs = 1, max_outputs = 1;
  std::vector<AttrSpec> attrs;
  bool defined = true;  // false: the op's family file has no case for it
};

// Each family's schemas; an op of another family, or one its file lacks, gets
// a schema with defined false.
OpSchema elementwise_schema(OpKind op);
OpSchema linalg_schema(OpKind op);
OpSchema conv_schema(OpKind op);
OpSchema pool_schema(OpKind op);
OpSchema normalization_schema(OpKind op);
OpSchema reduce_schema(OpKind op);
OpSchema movement_schema(OpKind op);
OpSchema generator_schema(OpKind op);
OpSchema vision_schema(OpKind op);
OpSchema recurrent_schema(OpKind op);
OpSchema control_flow_schema(OpKind op);
OpSchema text_schema(OpKind op);
OpSchema ml_schema(OpKind op);

// "src/ir/ops/conv.cpp": the file that defines the op's schema and inference.
std::string family_file(OpKind op);

// ---- shape inference -------------------------------------------------------------

class Ctx {
 public:
  Ctx(const Node& node, const std::vector<InferInput>& in, const std::function<Dim()>& fresh)
      : node_(node), in_(in), fresh_(fresh), out_(node.outputs.size()) {}

  template <class... Args>
  [[noreturn]] void error(ErrorCode code, const Args&... args) const {
    fail(code, "node '", node_.name, "' (", op_name(node_.op), "): ", args...);
  }
  const Node& node() const { return node_; }
  const Attributes& attrs() const { return node_.attrs; }
  size_t num_inputs() const { return in_.size(); }
  size_t num_outputs() const { return out_.size(); }
  bool has(size_t i) const { return i < in_.size() && in_[i].present; }
  const InferInput& input(size_t i) const {
    if (!has(i)) error(ErrorCode::kInvalidModel, "input ", i, " is required");
    return in_[i];
  }
  const Shape& shape(size_t i) const { return input(i).shape; }
  // "input 2 ('bias')" for messages.
  std::string input_name(size_t i) const {
    return has(i) && in_[i].name ? str("input ", i, " ('", *in_[i].name, "')") : str("input ", i);
  }
  DType dtype(size_t i) const { return input(i).dtype; }
  int64_t rank(size_t i) const { return int64_t(shape(i).size()); }
  Dim fresh() const { return fresh_(); }
  // n fresh symbols, for an output whose rank is known but not its dims; n is
  // checked before anything is made (a shape input's length may be 4e9).
  Shape fresh_shape(const Dim& n, const char* what) const {
    if (!n.is_constant()) error(ErrorCode::kUnsupported, what, " of unknown length");
    check_rank(n.constant(), what);
    Shape out;
    for (int64_t i = 0; i < n.constant(); ++i) out.push_back(fresh());
    return out;
  }
  void check_rank(int64_t rank, const char* what) const {
    if (rank > kMaxRank) error(ErrorCode::kUnsupported, what, " has ", rank, " dims, more than the limit of ", kMaxRank);
  }

  // Elements of an integer input known at inference time (a constant, or shape arithmetic).
  std::optional<std::vector<Dim>> ints(size_t i) const {
    if (!has(i)) return std::nullopt;
    if (in_[i].known) return *in_[i].known;
    if (in_[i].data && (is_integer(in_[i].dtype) || in_[i].dtype == DType::kBool)) {
      std::vector<int64_t> v = read_ints(*in_[i].data);
      return std::vector<Dim>(v.begin(), v.end());
    }
    return std::nullopt;
  }
  // Like ints() but every element must be a constant.
  std::optional<std::vector<int64_t>> const_ints(size_t i) const {
    auto v = ints(i);
    if (!v) return std::nullopt;
    std::vector<int64_t> out;
    for (auto& d : *v) {
      if (!d.is_constant()) return std::nullopt;
      out.push_back(d.constant());
    }
    return out;
  }
  std::optional<std::vector<double>> doubles(size_t i) const {
    if (!has(i) || !in_[i].data) return std::nullopt;
    return read_doubles(*in_[i].data);
  }

  int64_t axis(int64_t a, int64_t rank, const char* what = "axis") const {
    if (a < -rank || a >= rank) error(ErrorCode::kInvalidModel, what, " ", a, " is out of range for rank ", rank);
    return a < 0 ? a + rank : a;
  }
  void require_dtype(size_t i, std::initializer_list<DType> allowed) const {
    DType d = dtype(i);
    if (std::find(allowed.begin(), allowed.end(), d) == allowed.end())
      error(ErrorCode::kTypeError, "input ", i, " has dtype ", dtype_name(d), ", which this op does not accept");
  }
  void require_float(size_t i) const {
    if (!is_floating(dtype(i)))
      error(ErrorCode::kTypeError, "input ", i, " has dtype ", dtype_name(dtype(i)), "; expected a float type");
  }
  void require_same_dtype(size_t a, size_t b) const {
    if (dtype(a) != dtype(b))
      error(ErrorCode::kTypeError, "inputs ", a, " and ", b, " have dtypes ", dtype_name(dtype(a)), " and ",
            dtype_name(dtype(b)), "; they must match");
  }
  // A one-element input: rank 0, or any rank with every dim 1.
  void require_scalar(size_t i) const {
    for (const Dim& d : shape(i))
      if (d != Dim(1))
        error(ErrorCode::kShapeError, input_name(i), " has shape ", shape_to_string(shape(i)), "; expected a single value");
  }
  void require_rank(size_t i, int64_t lo, int64_t hi = -1) const {
    int64_t r = rank(i);
    if (r < lo || (hi >= 0 && r > hi))
      error(ErrorCode::kShapeError, "input ", i, " has rank ", r, " (shape ", shape_to_string(shape(i)),
            "); expected ", hi == lo ? str(lo) : hi < 0 ? str("at least ", lo) : str(lo, " to ", hi));
  }

  // Every output's rank and, where its dims are known, its size are checked
  // here, before any consumer (reference kernel, builder, runtime) allocates.
  void set(size_t i, DType dtype, Shape shape, std::optional<std::vector<Dim>> known = std::nullopt) {
    inferred_ = true;
    if (i >= out_.size()) return;
    check_rank(int64_t(shape.size()), "the output");
    if (shape_is_constant(shape)) checked_byte_size(shape_constants(shape), dtype, str("output ", i));
    if (known && int64_t(known->size()) > kMaxKnownElements) known.reset();
    out_[i] = InferOutput{dtype, std::move(shape), std::move(known)};
  }
  std::vector<InferOutput> take() { return std::move(out_); }
  bool inferred() const { return inferred_; }

  // Input i must broadcast to `target` without growing it (ONNX's
  // unidirectional broadcast): no more dims, each trailing dim 1 or the
  // target's. Kernels index parameters by the target's shape.
  void require_broadcasts_to(size_t i, const Shape& target, const char* target_name) const {
    const Shape& p = shape(i);
    bool ok = p.size() <= target.size();
    for (size_t k = 0; ok && k < p.size(); ++k) {
      const Dim &d = p[p.size() - 1 - k], &t = target[target.size() - 1 - k];
      ok = d == Dim(1) || d == t || !d.is_constant() || !t.is_constant();
    }
    if (!ok)
      error(ErrorCode::kShapeError, input_name(i), " of shape ", shape_to_string(p), " does not broadcast to ", target_name,
            " ", shape_to_string(target), " (each of its last dims must be 1 or equal)");
  }

  Shape broadcast(const Shape& a, const Shape& b) const {
    try {
      return broadcast_shapes(a, b);
    } catch (const Error& e) {
      error(e.code(), e.what());
    }
  }

 private:
  const Node& node_;
  const std::vector<InferInput>& in_;
  const std::function<Dim()>& fresh_;
  std::vector<InferOutput> out_;
  bool inferred_ = false;  // some output was set: the op has an inference rule
};

// Each family's shape inference: sets every output of c's node.
void infer_elementwise(Ctx& c);
void infer_linalg(Ctx& c);
void infer_conv(Ctx& c);
void infer_pool(Ctx& c);
void infer_normalization(Ctx& c);
void infer_reduce(Ctx& c);
void infer_movement(Ctx& c);
void infer_generator(Ctx& c);
void infer_vision(Ctx& c);
void infer_recurrent(Ctx& c);
void infer_control_flow(Ctx& c);
void infer_text(Ctx& c);
void infer_ml(Ctx& c);
// A family file's answer to an op kind it has no case for.
[[noreturn]] void no_inference(const Ctx& c);

void check_equal_dims(const Ctx& c, const Dim& a, const Dim& b, const char* what);
// A one-element int32 or int64 input that sizes an output (a window's size,
// frame_step, dft_length): its value where inference knows it (negative is an
// error), nullopt where it is data. A dim that follows from data must be a
// fresh symbol of its own (c.fresh()), never an expression of one: the GPU
// runtime binds such a dim to the size it reads back.
std::optional<Dim> scalar_size(const Ctx& c, size_t i, const char* what);

// Output size and padding of each spatial dim of a sliding window (conv, pools).
struct WindowDims {
  std::vector<Dim> pads_begin, pads_end, output;
};
WindowDims window_dims(const Ctx& c, const Shape& in, const std::vector<int64_t>& kernel, bool transpose,
                       const Shape* explicit_output = nullptr);

}  // namespace kiln::ir
