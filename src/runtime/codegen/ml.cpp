// The ml family's kernels (ai.onnx.ml): TreeEnsemble, LabelEncoder of
// numbers and ArrayFeatureExtractor. A model's trees and key tables are
// attributes, fixed for the engine's life: they are compiled into the kernel
// as constant arrays, so the module is the engine's copy of them on the device.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::codegen {

namespace {

// A double as the literal of its bits, which the kernel reads with __longlong_as_double (Inf and NaN included).
std::string bits_literal(double v) {
  std::ostringstream s;
  s << "0x" << std::hex << uint64_t(double_bits(v)) << "ULL";
  return s.str();
}

// `__device__ const T name[] = {...};`, one element at least (C++ has no empty arrays; an unused 0 stands in).
template <class Items, class Write>
void constant_array(std::ostringstream& s, const std::string& type, const std::string& name, const Items& items, Write write) {
  s << "__device__ const " << type << " " << name << "[" << std::max<size_t>(items.size(), 1) << "] = {";
  size_t i = 0;
  for (const auto& item : items) {
    s << (i ? "," : "") << (i % 16 == 0 ? "\n  " : "");
    write(item);
    ++i;
  }
  if (items.empty()) s << "0";
  s << "};\n";
}

int32_t checked_int(int64_t v, const char* what) {
  if (v < INT32_MIN || v > INT32_MAX) fail(ErrorCode::kUnsupported, "TreeEnsemble: ", what, " ", v, " outgrows the kernel's 32-bit indices");
  return int32_t(v);
}

// The largest finite value of the output's type: MIN's start (MAX's negated), as the reference.
double largest_of(DType dtype) {
  return dtype == DType::kFloat16 ? 65504.0 : dtype == DType::kFloat32 ? double(std::numeric_limits<float>::max())
                                                                       : std::numeric_limits<double>::max();
}

}  // namespace

std::string tree_ensemble_source(const TreeEnsembleSpec& spec) {
  const ir::TreeEnsembleAttrs& t = spec.trees;
  if (!is_floating(spec.dtype)) fail(ErrorCode::kUnsupported, "TreeEnsemble of ", dtype_name(spec.dtype));
  const int64_t targets = t.n_targets, per_thread = std::min<int64_t>(targets, kTreeTargetsPerThread);
  const int64_t groups = (targets + per_thread - 1) / per_thread;
  bool softmax = t.post_transform == ir::TreePostTransform::kSoftmax || t.post_transform == ir::TreePostTransform::kSoftmaxZero;
  if (softmax && groups > 1)
    fail(ErrorCode::kUnsupported, "TreeEnsemble: SOFTMAX over ", targets, " targets (a thread holds at most ", kTreeTargetsPerThread, ")");
  checked_int(int64_t(t.split.size()), "node count");
  checked_int(int64_t(t.leaf_weight.size()), "leaf count");

  std::ostringstream s;
  s << prelude() << params_constants<TreeEnsembleParams>(spec.specialize);
  // A branch is a node's index, or -1 - leaf for a leaf; a set-membership node's set is members[members_begin, members_end).
  s << "struct KilnTreeNode { unsigned long long split; int feature, on_true, on_false, mode, missing_true, members_begin, members_end; };\n";
  s << "struct KilnTreeLeaf { unsigned long long weight; int target; };\n";
  auto branch = [&](size_t node, bool taken) {
    int64_t id = taken ? t.true_id[node] : t.false_id[node];
    bool leaf = taken ? t.true_leaf[node] : t.false_leaf[node];
    return leaf ? -1 - id : id;
  };
  std::vector<double> members;
  std::vector<std::pair<size_t, size_t>> member_range;
  for (const std::vector<double>& set : t.members) {
    member_range.push_back({members.size(), members.size() + set.size()});
    members.insert(members.end(), set.begin(), set.end());
  }
  std::vector<size_t> nodes(t.split.size());
  for (size_t i = 0; i < nodes.size(); ++i) nodes[i] = i;
  constant_array(s, "KilnTreeNode", "kiln_tree_nodes", nodes, [&](size_t i) {
    s << "{" << bits_literal(t.split[i]) << "," << t.feature[i] << "," << branch(i, true) << "," << branch(i, false) << ","
      << int(t.mode[i]) << "," << int(t.missing_tracks_true[i]) << "," << member_range[i].first << "," << member_range[i].second << "}";
  });
  std::vector<size_t> leaves(t.leaf_weight.size());
  for (size_t i = 0; i < leaves.size(); ++i) leaves[i] = i;
  constant_array(s, "KilnTreeLeaf", "kiln_tree_leaves", leaves,
                 [&](size_t i) { s << "{" << bits_literal(t.leaf_weight[i]) << "," << t.leaf_target[i] << "}"; });
  constant_array(s, "unsigned long long", "kiln_tree_members", members, [&](double v) { s << bits_literal(v); });
  // A tree whose root is its leaf starts at that leaf (ir::tree_is_leaf: leaf `root`).
  constant_array(s, "int", "kiln_tree_roots", t.roots,
                 [&](int64_t root) { s << (ir::tree_is_leaf(t, root) ? -1 - root : root); });

  // PROBIT: sqrt(2) * erfinv(2p - 1) by Newton's method on erf, the reference's iteration.
  s << R"(__device__ double kiln_probit(double p) {
  const double y = 2.0 * p - 1.0;
  if (y <= -1.0) return -__longlong_as_double(0x7ff0000000000000LL);
  if (y >= 1.0) return __longlong_as_double(0x7ff0000000000000LL);
  double x = 0.0;
  for (int i = 0; i < 60; ++i) {
    const double step = (erf(x) - y) / (2.0 / sqrt(3.14159265358979323846) * exp(-x * x));
    x -= step;
    if (fabs(step) < 1e-15 * fmax(1.0, fabs(x))) break;
  }
  return sqrt(2.0) * x;
}
)";
  std::string ct = c_type(spec.dtype);
  s << kernel_entry(str(ct, "* __restrict__ out, const ", ct, "* __restrict__ x")) << params_binding<TreeEnsembleParams>(spec.specialize);
  double start = t.aggregate == ir::TreeAggregate::kMin ? largest_of(spec.dtype)
                 : t.aggregate == ir::TreeAggregate::kMax ? -largest_of(spec.dtype)
                                                          : 0.0;
  s << grid_stride_loop();
  s << "    const long long row = e / " << groups << "LL, first = (e % " << groups << "LL) * " << per_thread << "LL;\n";
  s << "    const int count = " << targets << "LL - first < " << per_thread << "LL ? (int)(" << targets << "LL - first) : "
    << per_thread << ";\n";
  s << "    const " << ct << "* in = x + row * prm.features;\n";
  s << "    double acc[" << per_thread << "];\n";
  s << "    for (int k = 0; k < " << per_thread << "; ++k) acc[k] = __longlong_as_double(" << bits_literal(start) << ");\n";
  s << "    for (int r = 0; r < " << t.roots.size() << "; ++r) {\n";
  s << "      int at = kiln_tree_roots[r];\n";
  s << "      while (at >= 0) {\n";
  s << "        const KilnTreeNode& node = kiln_tree_nodes[at];\n";
  s << "        const double v = (double)" << load_expr(spec.dtype, "in", "node.feature") << ", split = __longlong_as_double(node.split);\n";
  s << R"(        bool taken = false;
        switch (node.mode) {
          case 0: taken = v <= split; break;
          case 1: taken = v < split; break;
          case 2: taken = v >= split; break;
          case 3: taken = v > split; break;
          case 4: taken = v == split; break;
          case 5: taken = v != split; break;
          default:
            for (int m = node.members_begin; m < node.members_end && !taken; ++m) taken = __longlong_as_double(kiln_tree_members[m]) == v;
        }
        taken = taken || (node.missing_true && v != v);
        at = taken ? node.on_true : node.on_false;
      }
      const KilnTreeLeaf& leaf = kiln_tree_leaves[-1 - at];
      const long long k = (long long)leaf.target - first;
      if (k < 0 || k >= count) continue;
      const double w = __longlong_as_double(leaf.weight);
)";
  switch (t.aggregate) {  // MIN and MAX as std::min and std::max: a NaN weight is kept only where it comes first
    case ir::TreeAggregate::kSum: s << "      acc[k] += w;\n"; break;
    case ir::TreeAggregate::kAverage: s << "      acc[k] += w / " << literal(double(t.roots.size()), true) << ";\n"; break;
    case ir::TreeAggregate::kMin: s << "      acc[k] = w < acc[k] ? w : acc[k];\n"; break;
    case ir::TreeAggregate::kMax: s << "      acc[k] = acc[k] < w ? w : acc[k];\n"; break;
  }
  s << "    }\n";
  switch (t.post_transform) {
    case ir::TreePostTransform::kNone: break;
    case ir::TreePostTransform::kLogistic: s << "    for (int k = 0; k < count; ++k) acc[k] = 1.0 / (1.0 + exp(-acc[k]));\n"; break;
    case ir::TreePostTransform::kProbit: s << "    for (int k = 0; k < count; ++k) acc[k] = kiln_probit(acc[k]);\n"; break;
    case ir::TreePostTransform::kSoftmax:
    case ir::TreePostTransform::kSoftmaxZero: {
      // SOFTMAX_ZERO keeps zeros at zero and leaves them out of the maximum and the sum.
      std::string zeros = t.post_transform == ir::TreePostTransform::kSoftmaxZero ? "true" : "false";
      s << "    {\n      const bool keep_zeros = " << zeros << ";\n";
      s << R"(      double top = -__longlong_as_double(0x7ff0000000000000LL), sum = 0.0;
      for (int k = 0; k < count; ++k)
        if (!keep_zeros || acc[k] != 0.0) top = fmax(top, acc[k]);
      for (int k = 0; k < count; ++k) {
        acc[k] = keep_zeros && acc[k] == 0.0 ? 0.0 : exp(acc[k] - top);
        sum += acc[k];
      }
      for (int k = 0; k < count; ++k) acc[k] = sum > 0.0 ? acc[k] / sum : 0.0;
    }
)";
      break;
    }
  }
  s << "    for (int k = 0; k < count; ++k) " << store_stmt(spec.dtype, "out", str("row * ", targets, "LL + first + k"), "acc[k]")
    << "\n  }\n}\n";
  return s.str();
}

std::string label_encoder_source(const LabelEncoderSpec& spec) {
  const ir::LabelEncoderTable& table = spec.table;
  DType key = table.keys.dtype, value = table.values.dtype;
  if (is_string(key) || is_string(value))
    fail(ErrorCode::kUnsupported, "LabelEncoder of ", dtype_name(key), " keys to ", dtype_name(value), " values: strings live on the host");
  const int64_t n = table.keys.dims[0];
  bool float_keys = is_floating(key);
  // The reference's table: keys in order, each to its last entry; a NaN key (float keys) apart.
  std::map<double, int64_t> float_index;
  std::map<int64_t, int64_t> int_index;
  int64_t nan_pick = n;  // the default, where no key is NaN
  if (float_keys) {
    std::vector<double> keys = ir::read_doubles(table.keys);
    for (int64_t k = 0; k < n; ++k) (std::isnan(keys[size_t(k)]) ? nan_pick : float_index[keys[size_t(k)]]) = k;
  } else {
    std::vector<int64_t> keys = ir::read_ints(table.keys);
    for (int64_t k = 0; k < n; ++k) int_index[keys[size_t(k)]] = k;
  }
  size_t width = dtype_size(value);
  auto bits_at = [&](const ir::TensorData& t, size_t i) {
    uint64_t bits = 0;
    std::memcpy(&bits, t.data.data() + i * width, width);  // little-endian: the low bytes
    return bits;
  };
  std::vector<uint64_t> values;
  for (int64_t i = 0; i < n; ++i) values.push_back(bits_at(table.values, size_t(i)));
  values.push_back(bits_at(table.fallback, 0));

  std::ostringstream s;
  s << prelude() << params_constants<LabelEncoderParams>(spec.specialize);
  std::string bt = bits_type(value);
  constant_array(s, bt, "kiln_values", values, [&](uint64_t bits) { s << "(" << bt << ")0x" << std::hex << bits << "ULL" << std::dec; });
  std::vector<int64_t> picks;
  if (float_keys) {
    std::vector<double> keys;
    for (auto& [k, pick] : float_index) keys.push_back(k), picks.push_back(pick);
    constant_array(s, "unsigned long long", "kiln_keys", keys, [&](double k) { s << bits_literal(k); });
  } else {
    std::vector<int64_t> keys;
    for (auto& [k, pick] : int_index) keys.push_back(k), picks.push_back(pick);
    constant_array(s, "long long", "kiln_keys", keys, [&](int64_t k) { s << "(long long)0x" << std::hex << uint64_t(k) << "ULL" << std::dec; });
  }
  constant_array(s, "long long", "kiln_picks", picks, [&](int64_t pick) { s << pick; });
  s << (float_keys ? "__device__ __forceinline__ double kiln_key(long long i) { return __longlong_as_double((long long)kiln_keys[i]); }\n"
                   : "__device__ __forceinline__ long long kiln_key(long long i) { return kiln_keys[i]; }\n");
  s << kernel_entry(str(bt, "* __restrict__ out, const ", c_type(key), "* __restrict__ x")) << params_binding<LabelEncoderParams>(spec.specialize);
  s << grid_stride_loop();
  if (float_keys) s << "    const double v = (double)" << load_expr(key, "x", "e") << ";\n";
  else s << "    const long long v = (long long)x[e];\n";
  size_t keys = picks.size();
  s << "    long long lo = 0, hi = " << keys << "LL;  // the first key not below v\n";
  s << "    while (lo < hi) {\n      const long long mid = (lo + hi) >> 1;\n      if (kiln_key(mid) < v) lo = mid + 1; else hi = mid;\n    }\n";
  s << "    const long long pick = " << (float_keys ? str("v != v ? ", nan_pick, "LL : ") : std::string())
    << "lo < " << keys << "LL && kiln_key(lo) == v ? kiln_picks[lo] : " << n << "LL;\n";
  s << "    out[e] = kiln_values[pick];\n  }\n}\n";
  return s.str();
}

std::string array_feature_extractor_source(DType dtype, const std::optional<Params>& specialize) {
  std::string bt = bits_type(dtype);
  std::ostringstream s;
  s << prelude() << params_constants<GatherParams>(specialize)
    << kernel_entry(str(bt, "* __restrict__ out, const ", bt, "* __restrict__ x, const long long* __restrict__ indices"))
    << params_binding<GatherParams>(specialize) << grid_stride_loop();
  // out[o, j] = x[o, indices[j]] over an [outer, axis_size] view of x.
  s << R"(    const long long j = e % prm.count, o = e / prm.count, t = indices[j];
    out[e] = t >= 0 && t < prm.axis_size ? x[o * prm.axis_size + t] : ()" << bt << R"()0;
  }
}
)";
  return s.str();
}

}  // namespace kiln::codegen
