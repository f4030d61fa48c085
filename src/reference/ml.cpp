// The ml family (ai.onnx.ml): LabelEncoder, Binarizer, ArrayFeatureExtractor
// and TreeEnsemble, as ONNX's reference implementation computes them.
#include <cmath>
#include <limits>
#include <map>

#include "kernels.h"
#include "kiln/ir/ml.h"

namespace kiln::reference {

using ir::OpKind;

namespace {

// The values followed by the default: an element index into it for every key, the last for a miss.
Tensor values_and_default(const ir::LabelEncoderTable& t) {
  Tensor out = t.values;
  out.dims = {t.values.dims[0] + 1};
  if (is_string(out.dtype)) {
    out.strings.push_back(t.fallback.strings.at(0));
    return out;
  }
  std::vector<std::byte> bytes(t.values.data.size() + t.fallback.data.size());
  if (!t.values.data.bytes().empty()) std::memcpy(bytes.data(), t.values.data.data(), t.values.data.size());
  std::memcpy(bytes.data() + t.values.data.size(), t.fallback.data.data(), t.fallback.data.size());
  out.data = Buffer::from_bytes(std::move(bytes));
  return out;
}

// Keys compare as strings, integers or floats (NaN matches NaN); a key given twice maps to its last value.
Tensor run_label_encoder(const KernelContext& c) {
  const Tensor& x = c.in(0);
  ir::LabelEncoderTable table = ir::label_encoder_table(c.node);
  int64_t n = table.keys.dims[0];
  std::vector<int64_t> picks;
  if (is_string(x.dtype)) {
    std::map<std::string, int64_t, std::less<>> index;
    for (int64_t k = 0; k < n; ++k) index[table.keys.strings[size_t(k)]] = k;
    for (const std::string& s : x.strings) {
      auto it = index.find(s);
      picks.push_back(it == index.end() ? n : it->second);
    }
  } else if (is_floating(x.dtype)) {
    std::map<double, int64_t> index;
    int64_t nan_key = n;
    std::vector<double> keys = to_doubles(table.keys);
    for (int64_t k = 0; k < n; ++k) (std::isnan(keys[size_t(k)]) ? nan_key : index[keys[size_t(k)]]) = k;
    for (double v : to_doubles(x)) {
      auto it = index.find(v);
      picks.push_back(std::isnan(v) ? nan_key : it == index.end() ? n : it->second);
    }
  } else {
    std::map<int64_t, int64_t> index;
    std::vector<int64_t> keys = to_ints(table.keys);
    for (int64_t k = 0; k < n; ++k) index[keys[size_t(k)]] = k;
    for (int64_t v : to_ints(x)) {
      auto it = index.find(v);
      picks.push_back(it == index.end() ? n : it->second);
    }
  }
  Tensor values = values_and_default(table);
  std::vector<int64_t> strides = strides_of(x.dims);
  return remap(values, x.dims, [&](const std::vector<int64_t>& idx) {
    int64_t flat = 0;
    for (size_t d = 0; d < idx.size(); ++d) flat += idx[d] * strides[d];
    return picks[size_t(flat)];
  });
}

Tensor run_binarizer(const KernelContext& c) {
  const Tensor& x = c.in(0);
  double threshold = c.attrs().get_float("threshold", 0.0);
  std::vector<double> v = to_doubles(x);
  for (double& e : v) e = e > threshold ? 1.0 : 0.0;  // NaN is not above it: 0
  return from_doubles(x.dtype, x.dims, v);
}

// Indices outside [0, F) are an error (numpy's negative indices are not ONNX's).
Tensor run_array_feature_extractor(const KernelContext& c) {
  const Tensor& x = c.in(0);
  std::vector<int64_t> picked = to_ints(c.in(1));
  int64_t features = x.dims.back();
  for (size_t i = 0; i < picked.size(); ++i)
    if (picked[i] < 0 || picked[i] >= features)
      c.error(ErrorCode::kInvalidArgument, "index ", picked[i], " (element ", i, " of input 1) is outside [0, ", features,
              ") of input 0's last dim");
  std::vector<int64_t> dims = c.out_dims(0);
  return remap(x, dims, [&](const std::vector<int64_t>& idx) {
    int64_t row = 0;
    for (size_t d = 0; d + 1 < x.dims.size(); ++d) row = row * x.dims[d] + idx[d + dims.size() - x.dims.size()];
    return row * features + picked[size_t(idx.back())];
  });
}

bool branch_taken(const ir::TreeEnsembleAttrs& t, size_t node, double x) {
  double s = t.split[node];
  bool result = false;
  switch (t.mode[node]) {
    case ir::TreeMode::kLeq: result = x <= s; break;
    case ir::TreeMode::kLt: result = x < s; break;
    case ir::TreeMode::kGte: result = x >= s; break;
    case ir::TreeMode::kGt: result = x > s; break;
    case ir::TreeMode::kEq: result = x == s; break;
    case ir::TreeMode::kNeq: result = x != s; break;
    case ir::TreeMode::kMember:
      result = std::find(t.members[node].begin(), t.members[node].end(), x) != t.members[node].end();
      break;
  }
  return result || (t.missing_tracks_true[node] && std::isnan(x));
}

// The leaf a row reaches from `root` (tree_ensemble_attrs checked that every walk ends in one).
int64_t leaf_of(const ir::TreeEnsembleAttrs& t, int64_t root, const double* row) {
  if (ir::tree_is_leaf(t, root)) return root;
  size_t node = size_t(root);
  while (true) {
    bool taken = branch_taken(t, node, row[t.feature[node]]);
    int64_t next = taken ? t.true_id[node] : t.false_id[node];
    if (taken ? t.true_leaf[node] : t.false_leaf[node]) return next;
    node = size_t(next);
  }
}

double probit(double p) {  // sqrt(2) * erfinv(2p - 1), by Newton's method on erf
  double y = 2 * p - 1;
  if (y <= -1) return -INFINITY;
  if (y >= 1) return INFINITY;
  double x = 0;
  for (int i = 0; i < 60; ++i) {
    double step = (std::erf(x) - y) / (2 / std::sqrt(M_PI) * std::exp(-x * x));
    x -= step;
    if (std::fabs(step) < 1e-15 * std::max(1.0, std::fabs(x))) break;
  }
  return std::sqrt(2.0) * x;
}

void post_transform(ir::TreePostTransform transform, double* row, int64_t n) {
  switch (transform) {
    case ir::TreePostTransform::kNone: return;
    case ir::TreePostTransform::kLogistic:
      for (int64_t i = 0; i < n; ++i) row[i] = 1 / (1 + std::exp(-row[i]));
      return;
    case ir::TreePostTransform::kProbit:
      for (int64_t i = 0; i < n; ++i) row[i] = probit(row[i]);
      return;
    case ir::TreePostTransform::kSoftmax:
    case ir::TreePostTransform::kSoftmaxZero: {  // SOFTMAX_ZERO keeps zeros at zero and leaves them out of the sum
      bool keep_zeros = transform == ir::TreePostTransform::kSoftmaxZero;
      double top = -INFINITY, sum = 0;
      for (int64_t i = 0; i < n; ++i)
        if (!keep_zeros || row[i] != 0) top = std::max(top, row[i]);
      for (int64_t i = 0; i < n; ++i) {
        row[i] = keep_zeros && row[i] == 0 ? 0 : std::exp(row[i] - top);
        sum += row[i];
      }
      for (int64_t i = 0; i < n; ++i) row[i] = sum > 0 ? row[i] / sum : 0;
      return;
    }
  }
}

// Sums (or averages, or takes the least or largest of) the leaf weights every
// tree gives each target; MIN and MAX start from the type's largest and
// smallest finite values, as ONNX's reference does.
Tensor run_tree_ensemble(const KernelContext& c) {
  const Tensor& x = c.in(0);
  ir::TreeEnsembleAttrs t = ir::tree_ensemble_attrs(c.node);
  int64_t rows = x.dims[0], features = x.dims[1], targets = t.n_targets;
  if (t.max_feature >= features)
    c.error(ErrorCode::kInvalidArgument, "a tree node reads feature ", t.max_feature, " but input 0 has ", features);
  double largest = x.dtype == DType::kFloat16 ? 65504.0 : x.dtype == DType::kFloat32 ? double(std::numeric_limits<float>::max())
                                                                                      : std::numeric_limits<double>::max();
  double start = t.aggregate == ir::TreeAggregate::kMin ? largest : t.aggregate == ir::TreeAggregate::kMax ? -largest : 0.0;
  std::vector<double> in = to_doubles(x), out(size_t(ir::checked_numel({rows, targets})), start);
  double trees = double(t.roots.size());
  for (int64_t r = 0; r < rows; ++r) {
    double* acc = out.data() + r * targets;
    for (int64_t root : t.roots) {
      int64_t leaf = leaf_of(t, root, in.data() + r * features);
      double w = t.leaf_weight[size_t(leaf)];
      double& a = acc[t.leaf_target[size_t(leaf)]];
      switch (t.aggregate) {
        case ir::TreeAggregate::kSum: a += w; break;
        case ir::TreeAggregate::kAverage: a += w / trees; break;
        case ir::TreeAggregate::kMin: a = std::min(a, w); break;
        case ir::TreeAggregate::kMax: a = std::max(a, w); break;
      }
    }
    post_transform(t.post_transform, acc, targets);
  }
  return from_doubles(x.dtype, {rows, targets}, out);
}

}  // namespace

Kernel ml_kernel(OpKind op) {
  switch (op) {
    case OpKind::kLabelEncoder: return one_output<run_label_encoder>;
    case OpKind::kBinarizer: return one_output<run_binarizer>;
    case OpKind::kArrayFeatureExtractor: return one_output<run_array_feature_extractor>;
    case OpKind::kTreeEnsemble: return one_output<run_tree_ensemble>;
    default: return nullptr;
  }
}

}  // namespace kiln::reference
