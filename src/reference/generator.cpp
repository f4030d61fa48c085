// The generator family: outputs made from shapes and scalar inputs (Shape,
// Size, ConstantOfShape, Range, OneHot, EyeLike, the signal windows,
// MelWeightMatrix), and the random ops, whose numbers kiln/ir/random.h defines.
#include <cmath>
#include <numbers>

#include "kernels.h"
#include "kiln/ir/random.h"
#include "kiln/ir/signal.h"

namespace kiln::reference {

using ir::OpKind;

namespace {

// Shape and Size: shape inference knows the contents.
Tensor run_shape(const KernelContext& c) {
  std::vector<int64_t> v;
  for (auto& d : *c.outputs[0].known) v.push_back(d.constant());
  return from_ints(DType::kInt64, c.out_dims(0), v);
}

Tensor run_constant_of_shape(const KernelContext& c) {
  const ir::TensorData* value = c.attrs().get_tensor("value");
  double v = value ? to_doubles(*value)[0] : 0.0;
  std::vector<int64_t> dims = c.out_dims(0);
  if (value && !is_floating(value->dtype))
    return from_ints(value->dtype, dims, std::vector<int64_t>(size_t(ir::checked_numel(dims)), to_ints(*value)[0]));
  return from_doubles(c.out_dtype(0), dims, std::vector<double>(size_t(ir::checked_numel(dims)), v));
}

Tensor run_onehot(const KernelContext& c) {
  std::vector<double> idx = to_doubles(c.in(0)), values = to_doubles(c.in(2));
  std::vector<int64_t> dims = c.out_dims(0);
  int64_t axis = normalize_axis(c, c.attrs().get_int("axis", -1), dims.size());
  int64_t depth = dims[size_t(axis)];
  int64_t inner = ir::checked_numel({dims.begin() + axis + 1, dims.end()});
  std::vector<double> out(size_t(ir::checked_numel(dims)), values[0]);
  for (size_t i = 0; i < idx.size(); ++i) {
    int64_t v = int64_t(idx[i]);
    if (v < 0) v += depth;
    if (v < 0 || v >= depth) continue;  // out-of-range indices give an all-off row
    int64_t o = int64_t(i) / inner, in = int64_t(i) % inner;
    out[size_t((o * depth + v) * inner + in)] = values[1];
  }
  return from_doubles(c.out_dtype(0), dims, out);
}

Tensor run_range(const KernelContext& c) {
  DType dt = c.in(0).dtype;
  double start = scalar_double(c.in(0)), delta = scalar_double(c.in(2));
  if (delta == 0) c.error(ErrorCode::kInvalidModel, "delta is zero");
  int64_t n = c.out_dims(0).at(0);
  if (!is_floating(dt)) {
    int64_t s = to_ints(c.in(0))[0], d = to_ints(c.in(2))[0];
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = s + i * d;
    return from_ints(dt, {n}, v);
  }
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = start + double(i) * delta;
  return from_doubles(dt, {n}, v);
}


// HannWindow, HammingWindow, BlackmanWindow: a cosine sum over `size` points.
Tensor run_signal_window(const KernelContext& c) {
  std::vector<int64_t> dims = c.out_dims(0);
  int64_t n = dims.at(0);
  double denom = double(c.attrs().get_int("periodic", 1) != 0 ? n : n - 1);  // 0 for a symmetric window of 1: NaN, as ONNX's
  ir::CosineWindow w = ir::cosine_window(c.node.op);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double angle = 2 * std::numbers::pi * double(i) / denom;
    v[size_t(i)] = w.a0 - w.a1 * std::cos(angle) + w.a2 * std::cos(2 * angle);
  }
  return from_doubles(c.out_dtype(0), dims, v);
}

// MelWeightMatrix: column m is a triangle over the spectrogram bins from the
// bin of mel point m to that of point m + 2 (peak 1 at point m + 1), the
// num_mel_bins + 2 points evenly spaced on the mel scale between the edges.
// The bins are floor((dft_length + 1) * hz / sample_rate), as in ONNX's
// reference; the GPU kernel (codegen::mel_weight_matrix_source) computes the same.
Tensor run_mel_weight_matrix(const KernelContext& c) {
  std::vector<int64_t> dims = c.out_dims(0);
  int64_t bins = dims.at(0), mels = dims.at(1);
  double dft_length = double(to_ints(c.in(1))[0]), rate = scalar_double(c.in(2));
  double lower = scalar_double(c.in(3)), upper = scalar_double(c.in(4));
  auto mel = [](double hz) { return 2595 * std::log1p(hz / 700) / std::log(10.0); };
  double low = mel(lower), step = (mel(upper) - low) / double(mels + 2);
  std::vector<double> edge(size_t(mels + 2));
  for (int64_t i = 0; i < mels + 2; ++i) {
    double hz = 700 * std::expm1((double(i) * step + low) / 2595 * std::log(10.0));
    edge[size_t(i)] = std::floor((dft_length + 1) * hz / rate);
    if (!(edge[size_t(i)] >= 0 && edge[size_t(i)] < double(bins)))
      c.error(ErrorCode::kInvalidArgument, "mel point ", i, " (", hz, " Hz) falls in frequency bin ", edge[size_t(i)], ", outside the ",
              bins, " bins of a DFT of length ", dft_length, " at sample rate ", rate,
              "; lower_edge_hertz and upper_edge_hertz must lie in [0, sample_rate / 2]");
  }
  std::vector<double> out(size_t(bins * mels));
  for (int64_t j = 0; j < bins; ++j)
    for (int64_t m = 0; m < mels; ++m) {
      double l = edge[size_t(m)], ctr = edge[size_t(m + 1)], h = edge[size_t(m + 2)], x = double(j), v = 0;
      if (ctr < h && x >= ctr && x < h) v = (h - x) / (h - ctr);  // the falling side, written last in ONNX's loops
      else if (l == ctr && x == ctr) v = 1;
      else if (l < ctr && x >= l && x <= ctr) v = (x - l) / (ctr - l);
      out[size_t(j * mels + m)] = v;
    }
  return from_doubles(c.out_dtype(0), dims, out);
}

// EyeLike: ones where column - row == k.
Tensor run_eye_like(const KernelContext& c) {
  std::vector<int64_t> dims = c.out_dims(0);
  int64_t k = c.attrs().get_int("k", 0);
  std::vector<int64_t> out(size_t(ir::checked_numel(dims)), 0);
  for (int64_t r = 0; r < dims[0]; ++r)
    if (r + k >= 0 && r + k < dims[1]) out[size_t(r * dims[1] + r + k)] = 1;
  return from_ints(c.out_dtype(0), dims, out);
}

// RandomUniform, RandomNormal and their Like forms.
Tensor run_random(const KernelContext& c) {
  std::vector<int64_t> dims = c.out_dims(0);
  DType dtype = c.out_dtype(0);
  uint64_t key = ir::random_key(c.node);
  ir::RandomDistribution d = ir::random_distribution(c.node);
  bool normal = c.node.op == OpKind::kRandomNormal || c.node.op == OpKind::kRandomNormalLike;
  auto round = [dtype](double v) { return rounded_to(dtype, v); };
  std::vector<double> v(size_t(ir::checked_numel(dims)));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = normal ? std::fma(d.b, kiln_random_normal(key, i), d.a) : kiln_random_uniform(key, i, d.a, d.b, round);
  return from_doubles(dtype, dims, v);
}

// Bernoulli: 1 where draw 0 of the element is below its probability.
Tensor run_bernoulli(const KernelContext& c) {
  std::vector<double> p = to_doubles(c.in(0));
  uint64_t key = ir::random_key(c.node);
  std::vector<int64_t> v(p.size());
  for (size_t i = 0; i < p.size(); ++i) v[i] = kiln_random_unit(key, i, 0) < p[i] ? 1 : 0;
  return from_ints(c.out_dtype(0), c.out_dims(0), v);
}

// Multinomial: sample s of row b is element b * sample_size + s.
Tensor run_multinomial(const KernelContext& c) {
  std::vector<double> logits = to_doubles(c.in(0));
  std::vector<int64_t> dims = c.out_dims(0);
  int64_t classes = c.in(0).dims[1], samples = dims[1];
  uint64_t key = ir::random_key(c.node);
  std::vector<int64_t> v(size_t(ir::checked_numel(dims)));
  for (size_t i = 0; i < v.size(); ++i) {
    const double* row = logits.data() + int64_t(i) / samples * classes;
    v[i] = kiln_random_class(key, i, classes, [row](long long j) { return row[j]; });
  }
  return from_ints(c.out_dtype(0), dims, v);
}

}  // namespace

Kernel generator_kernel(OpKind op) {
  switch (op) {
    case OpKind::kShape: case OpKind::kSize: return one_output<run_shape>;
    case OpKind::kConstantOfShape: return one_output<run_constant_of_shape>;
    case OpKind::kRange: return one_output<run_range>;
    case OpKind::kOneHot: return one_output<run_onehot>;
    case OpKind::kHannWindow: case OpKind::kHammingWindow: case OpKind::kBlackmanWindow: return one_output<run_signal_window>;
    case OpKind::kMelWeightMatrix: return one_output<run_mel_weight_matrix>;
    case OpKind::kEyeLike: return one_output<run_eye_like>;
    case OpKind::kRandomUniform: case OpKind::kRandomNormal: case OpKind::kRandomUniformLike: case OpKind::kRandomNormalLike:
      return one_output<run_random>;
    case OpKind::kBernoulli: return one_output<run_bernoulli>;
    case OpKind::kMultinomial: return one_output<run_multinomial>;
    default: return nullptr;
  }
}

}  // namespace kiln::reference
