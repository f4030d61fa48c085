// The generator family: outputs made from shapes and scalar inputs rather
// than from input elements (Shape, Size, ConstantOfShape, Range, OneHot, EyeLike,
// the signal windows and MelWeightMatrix), and the random ops.
#include <cmath>
#include <iterator>

#include "family.h"
#include "kiln/ir/random.h"

namespace kiln::ir {

namespace {

void infer_shape(Ctx& c) {
  const Shape& x = c.shape(0);
  int64_t r = int64_t(x.size());
  int64_t start = c.attrs().get_int("start", 0), end = c.attrs().get_int("end", r);
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = std::clamp<int64_t>(start, 0, r);
  end = std::clamp<int64_t>(end, start, r);
  std::vector<Dim> dims(x.begin() + start, x.begin() + end);
  c.set(0, DType::kInt64, {Dim(int64_t(dims.size()))}, dims);
}

void infer_constant_of_shape(Ctx& c) {
  c.require_dtype(0, {DType::kInt64});
  const TensorData* v = c.attrs().get_tensor("value");
  DType dtype = v ? v->dtype : DType::kFloat32;
  if (v && v->numel() != 1) c.error(ErrorCode::kInvalidModel, "value must have exactly one element");
  auto dims = c.ints(0);
  Shape out;
  if (dims) {
    c.check_rank(int64_t(dims->size()), "the shape");
    out.assign(dims->begin(), dims->end());
  } else {
    c.require_rank(0, 1, 1);
    out = c.fresh_shape(c.shape(0)[0], "the shape");
  }
  for (auto& d : out)
    if (d.is_constant() && d.constant() < 0) c.error(ErrorCode::kShapeError, "negative dim ", d.constant());
  std::optional<std::vector<Dim>> known;
  if (out.size() == 1 && out[0].is_constant() && out[0].constant() <= kMaxKnownElements && (!v || is_integer(v->dtype)))
    known = std::vector<Dim>(size_t(out[0].constant()), Dim(v ? read_ints(*v)[0] : 0));
  c.set(0, dtype, out, known);
}

void infer_range(Ctx& c) {
  c.require_same_dtype(0, 1);
  c.require_same_dtype(0, 2);
  for (size_t i = 0; i < 3; ++i)
    if (c.rank(i) != 0 && !(c.rank(i) == 1 && c.shape(i)[0] == Dim(1)))
      c.error(ErrorCode::kShapeError, "input ", i, " must be a scalar");
  auto s = c.doubles(0), l = c.doubles(1), d = c.doubles(2);
  Dim n = c.fresh();
  if (is_integer(c.dtype(0))) {
    auto si = c.ints(0), li = c.ints(1), di = c.ints(2);
    if (si && li && di && (*di)[0] == Dim(1)) n = dim_max(Dim(0), (*li)[0] - (*si)[0]);
    else if (si && li && di && (*di)[0].is_constant()) {
      if ((*di)[0].constant() == 0) c.error(ErrorCode::kInvalidModel, "delta is zero");
      Dim span = (*li)[0] - (*si)[0];
      n = dim_max(Dim(0), (*di)[0].constant() > 0 ? ceil_div(span, (*di)[0]) : ceil_div(Dim(0) - span, Dim(0) - (*di)[0]));
    }
  } else if (s && l && d) {
    if ((*d)[0] == 0) c.error(ErrorCode::kInvalidModel, "delta is zero");
    double count = std::ceil(((*l)[0] - (*s)[0]) / (*d)[0]);
    if (!(count < 1e12)) c.error(ErrorCode::kShapeError, "Range would have ", count, " elements");
    n = Dim(std::max<int64_t>(0, int64_t(count)));
  }
  c.set(0, c.dtype(0), {n});
}

void infer_onehot(Ctx& c) {
  Shape out = c.shape(0);
  int64_t axis = c.attrs().get_int("axis", -1);
  int64_t r = int64_t(out.size()) + 1;
  axis = c.axis(axis, r);
  if (c.shape(2).size() != 1 || !(c.shape(2)[0] == Dim(2))) c.error(ErrorCode::kShapeError, "values must have 2 elements");
  auto depth = c.doubles(1);
  Dim d = c.fresh();
  if (depth) {
    if (depth->size() != 1) c.error(ErrorCode::kShapeError, "depth must have one element");
    if (!((*depth)[0] >= 1 && (*depth)[0] < 1e9)) c.error(ErrorCode::kInvalidModel, "depth ", (*depth)[0], " is not valid");
    d = Dim(int64_t((*depth)[0]));
  }
  out.insert(out.begin() + axis, d);
  c.set(0, c.dtype(2), out);
}


// The dtype an `output_datatype` attribute names (a kiln dtype code; the ONNX
// front end translates ONNX's), float32 when absent.
DType output_datatype(const Ctx& c) {
  int64_t code = c.attrs().get_int("output_datatype", int64_t(DType::kFloat32));
  std::optional<DType> dtype = numeric_dtype_from_code(code);
  if (!dtype || *dtype == DType::kBool) c.error(ErrorCode::kInvalidModel, "output_datatype ", code, " is not a numeric dtype");
  return *dtype;
}

// HannWindow, HammingWindow, BlackmanWindow: [size].
void infer_signal_window(Ctx& c) {
  std::optional<Dim> size = scalar_size(c, 0, "size");
  c.set(0, output_datatype(c), {size ? *size : c.fresh()});
}

// MelWeightMatrix: [dft_length / 2 + 1, num_mel_bins].
void infer_mel_weight_matrix(Ctx& c) {
  c.require_same_dtype(0, 1);
  c.require_same_dtype(0, 2);
  c.require_float(3);
  c.require_same_dtype(3, 4);
  for (size_t i = 2; i < 5; ++i) c.require_scalar(i);
  std::optional<Dim> mel_bins = scalar_size(c, 0, "num_mel_bins"), dft_length = scalar_size(c, 1, "dft_length");
  if (auto rate = c.doubles(2); rate && !((*rate)[0] > 0))
    c.error(ErrorCode::kInvalidModel, "sample_rate is ", (*rate)[0], "; it must be positive");
  Dim bins = dft_length ? floor_div(*dft_length, Dim(2)) + Dim(1) : c.fresh();
  c.set(0, output_datatype(c), {bins, mel_bins ? *mel_bins : c.fresh()});
}

// EyeLike: a matrix of the input's shape, of the type `dtype` names (a kiln
// DType code; the input's type without it).
void infer_eye_like(Ctx& c) {
  c.require_rank(0, 2, 2);
  DType dtype = c.dtype(0);
  if (c.attrs().has("dtype")) {
    std::optional<DType> code = numeric_dtype_from_code(c.attrs().get_int("dtype", -1));
    if (!code) c.error(ErrorCode::kInvalidModel, "'dtype' is not a dtype");
    dtype = *code;
  }
  c.set(0, dtype, c.shape(0));
}

// A kiln dtype code in attribute `name` (the ONNX front end translates
// ONNX's), `fallback` when absent.
DType dtype_attr(const Ctx& c, const char* name, DType fallback) {
  if (!c.attrs().has(name)) return fallback;
  int64_t code = c.attrs().get_int(name, -1);
  std::optional<DType> dtype = numeric_dtype_from_code(code);
  if (!dtype) c.error(ErrorCode::kInvalidModel, "'", name, "' ", code, " is not a dtype");
  return *dtype;
}

// RandomUniform and RandomNormal ([shape] attribute), their Like forms (the
// input's shape; its dtype without a dtype attribute): floating outputs.
void infer_random(Ctx& c) {
  bool like = c.node().op == OpKind::kRandomUniformLike || c.node().op == OpKind::kRandomNormalLike;
  DType dtype = dtype_attr(c, "dtype", like ? c.dtype(0) : DType::kFloat32);
  if (!is_floating(dtype)) c.error(ErrorCode::kTypeError, "output dtype ", dtype_name(dtype), "; expected a float type");
  RandomDistribution d = random_distribution(c.node());
  bool uniform = c.node().op == OpKind::kRandomUniform || c.node().op == OpKind::kRandomUniformLike;
  if (uniform && !(d.a < d.b)) c.error(ErrorCode::kInvalidModel, "low ", d.a, " is not below high ", d.b);
  if (like) {
    c.set(0, dtype, c.shape(0));
    return;
  }
  if (!c.attrs().has("shape")) c.error(ErrorCode::kInvalidModel, "attribute 'shape' is required");
  std::vector<int64_t> dims = c.attrs().get_ints("shape");
  c.check_rank(int64_t(dims.size()), "the shape");
  for (int64_t d : dims)
    if (d < 0) c.error(ErrorCode::kShapeError, "negative dim ", d, " in 'shape'");
  c.set(0, dtype, shape_of(dims));
}

// Bernoulli: 0 or 1 per probability, of `dtype` (the input's without it).
void infer_bernoulli(Ctx& c) {
  c.require_float(0);
  c.set(0, dtype_attr(c, "dtype", c.dtype(0)), c.shape(0));
}

// Multinomial: [batch, class_size] logits -> [batch, sample_size] classes, int32 or int64.
void infer_multinomial(Ctx& c) {
  c.require_float(0);
  c.require_rank(0, 2, 2);
  DType dtype = dtype_attr(c, "dtype", DType::kInt32);
  if (dtype != DType::kInt32 && dtype != DType::kInt64)
    c.error(ErrorCode::kTypeError, "output dtype ", dtype_name(dtype), "; Multinomial makes int32 or int64");
  int64_t samples = c.attrs().get_int("sample_size", 1);
  if (samples < 0) c.error(ErrorCode::kInvalidModel, "sample_size ", samples, " is negative");
  const Dim& classes = c.shape(0)[1];
  if (classes.is_constant() && classes.constant() < 1) c.error(ErrorCode::kShapeError, "input 0 has no classes (shape ", shape_to_string(c.shape(0)), ")");
  c.set(0, dtype, {c.shape(0)[0], Dim(samples)});
}

}  // namespace

OpSchema generator_schema(OpKind op) {
  using T = AttrType;
  switch (op) {
    case OpKind::kSize: return OpSchema{};  // one input, one output, no attributes
    case OpKind::kShape: return {1, 1, 1, 1, {{"start", T::kInt}, {"end", T::kInt}}};
    case OpKind::kConstantOfShape: return {1, 1, 1, 1, {{"value", T::kTensor}}};
    case OpKind::kRange: return {3, 3, 1, 1, {}};
    case OpKind::kOneHot: return {3, 3, 1, 1, {{"axis", T::kInt}}};
    case OpKind::kHannWindow: case OpKind::kHammingWindow: case OpKind::kBlackmanWindow:
      return {1, 1, 1, 1, {{"periodic", T::kInt}, {"output_datatype", T::kInt}}};
    case OpKind::kMelWeightMatrix: return {5, 5, 1, 1, {{"output_datatype", T::kInt}}};
    case OpKind::kEyeLike: return {1, 1, 1, 1, {{"dtype", T::kInt}, {"k", T::kInt}}};
    case OpKind::kRandomUniform:
      return {0, 0, 1, 1, {{"dtype", T::kInt}, {"high", T::kFloat}, {"low", T::kFloat}, {"seed", T::kFloat}, {"shape", T::kInts}}};
    case OpKind::kRandomNormal:
      return {0, 0, 1, 1, {{"dtype", T::kInt}, {"mean", T::kFloat}, {"scale", T::kFloat}, {"seed", T::kFloat}, {"shape", T::kInts}}};
    case OpKind::kRandomUniformLike:
      return {1, 1, 1, 1, {{"dtype", T::kInt}, {"high", T::kFloat}, {"low", T::kFloat}, {"seed", T::kFloat}}};
    case OpKind::kRandomNormalLike:
      return {1, 1, 1, 1, {{"dtype", T::kInt}, {"mean", T::kFloat}, {"scale", T::kFloat}, {"seed", T::kFloat}}};
    case OpKind::kBernoulli: return {1, 1, 1, 1, {{"dtype", T::kInt}, {"seed", T::kFloat}}};
    case OpKind::kMultinomial: return {1, 1, 1, 1, {{"dtype", T::kInt}, {"sample_size", T::kInt}, {"seed", T::kFloat}}};
    default: return {0, 0, 0, 0, {}, false};
  }
}

void infer_generator(Ctx& c) {
  switch (c.node().op) {
    case OpKind::kShape: infer_shape(c); break;
    case OpKind::kSize: c.set(0, DType::kInt64, {}, std::vector<Dim>{shape_numel(c.shape(0))}); break;
    case OpKind::kConstantOfShape: infer_constant_of_shape(c); break;
    case OpKind::kRange: infer_range(c); break;
    case OpKind::kOneHot: infer_onehot(c); break;
    case OpKind::kHannWindow: case OpKind::kHammingWindow: case OpKind::kBlackmanWindow: infer_signal_window(c); break;
    case OpKind::kMelWeightMatrix: infer_mel_weight_matrix(c); break;
    case OpKind::kEyeLike: infer_eye_like(c); break;
    case OpKind::kRandomUniform: case OpKind::kRandomNormal: case OpKind::kRandomUniformLike: case OpKind::kRandomNormalLike:
      infer_random(c);
      break;
    case OpKind::kBernoulli: infer_bernoulli(c); break;
    case OpKind::kMultinomial: infer_multinomial(c); break;
    default: no_inference(c);
  }
}

}  // namespace kiln::ir
