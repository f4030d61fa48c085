#include "kiln/ir/ml.h"

#include <cmath>
#include <cstring>

#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::ir {

namespace {

template <class... Args>
[[noreturn]] void node_error(const Node& node, const Args&... args) {
  fail(ErrorCode::kInvalidModel, "node '", node.name, "' (", op_name(node.op), "): ", args...);
}

TensorData vector_of(DType dtype, const std::vector<int64_t>& ints, const std::vector<double>& floats,
                     const std::vector<std::string>& strings) {
  TensorData t;
  t.dtype = dtype;
  if (is_string(dtype)) {
    t.strings = strings;
  } else if (dtype == DType::kInt64) {
    t.data = Buffer::copy_of(ints.data(), ints.size() * sizeof(int64_t));
  } else {
    std::vector<float> f(floats.begin(), floats.end());
    t.data = Buffer::copy_of(f.data(), f.size() * sizeof(float));
  }
  t.dims = {int64_t(is_string(dtype) ? strings.size() : dtype == DType::kInt64 ? ints.size() : floats.size())};
  return t;
}

// The one `prefix`_strings / _int64s / _floats / _tensor attribute of a LabelEncoder.
TensorData label_encoder_list(const Node& node, const std::string& prefix) {
  const Attributes& a = node.attrs;
  const std::string strings = prefix + "_strings", ints = prefix + "_int64s", floats = prefix + "_floats", tensor = prefix + "_tensor";
  int given = int(a.has(strings)) + int(a.has(ints)) + int(a.has(floats)) + int(a.has(tensor));
  if (given != 1)
    node_error(node, "needs exactly one of ", strings, ", ", ints, ", ", floats, " and ", tensor, " (it has ", given, ")");
  if (a.has(tensor)) {
    TensorData t = *a.get_tensor(tensor);
    if (t.dims.size() != 1) node_error(node, "'", tensor, "' has rank ", t.dims.size(), "; expected 1");
    return t;
  }
  if (a.has(strings)) return vector_of(DType::kString, {}, {}, a.get_strings(strings));
  if (a.has(ints)) return vector_of(DType::kInt64, a.get_ints(ints), {}, {});
  return vector_of(DType::kFloat32, {}, a.get_floats(floats), {});
}

std::vector<int64_t> ints_attr(const Node& node, const char* name, size_t count) {
  std::vector<int64_t> v = node.attrs.get_ints(name);
  if (v.size() != count) node_error(node, "'", name, "' has ", v.size(), " entries; expected ", count);
  return v;
}

std::vector<double> floats_of_tensor(const Node& node, const char* name) {
  const TensorData* t = node.attrs.get_tensor(name);
  if (!t) return {};
  if (!is_floating(t->dtype)) node_error(node, "'", name, "' has dtype ", dtype_name(t->dtype), "; expected a float type");
  return read_doubles(*t);
}

std::vector<bool> flags(const std::vector<int64_t>& v) { return {v.begin(), v.end()}; }

}  // namespace

LabelEncoderTypes label_encoder_types(const Node& node) {
  LabelEncoderTable t = label_encoder_table(node);
  return {t.keys.dtype, t.values.dtype};
}

LabelEncoderTable label_encoder_table(const Node& node) {
  LabelEncoderTable t{label_encoder_list(node, "keys"), label_encoder_list(node, "values"), {}};
  if (t.keys.dims[0] != t.values.dims[0])
    node_error(node, t.keys.dims[0], " keys but ", t.values.dims[0], " values; they must pair up");
  if (is_floating(t.keys.dtype) && t.keys.dtype != DType::kFloat32 && t.keys.dtype != DType::kFloat64)
    node_error(node, "keys of ", dtype_name(t.keys.dtype), "; float keys are float32 or float64");
  DType v = t.values.dtype;
  if (const TensorData* d = node.attrs.get_tensor("default_tensor")) {
    if (d->dtype != v || d->numel() != 1)
      node_error(node, "default_tensor is ", d->numel(), " elements of ", dtype_name(d->dtype), "; expected one ", dtype_name(v));
    t.fallback = *d;
  } else if (is_string(v)) {
    t.fallback = vector_of(DType::kString, {}, {}, {node.attrs.get_string("default_string", "_Unused")});
  } else if (is_floating(v)) {
    std::vector<double> value{node.attrs.get_float("default_float", -0.0)};
    t.fallback = vector_of(DType::kFloat32, {}, value, {});
    if (v != DType::kFloat32) {  // a values_tensor of float64 or float16 without default_tensor: -0.0 in its type
      t.fallback.dtype = v;
      std::vector<std::byte> bytes(dtype_size(v));
      if (v == DType::kFloat64) std::memcpy(bytes.data(), &value[0], 8);
      else {
        uint16_t bits = v == DType::kFloat16 ? float_to_half(float(value[0])) : float_to_bfloat16(float(value[0]));
        std::memcpy(bytes.data(), &bits, 2);
      }
      t.fallback.data = Buffer::from_bytes(std::move(bytes));
    }
  } else {  // integers: default_int64 in the values' type
    int64_t value = node.attrs.get_int("default_int64", -1);
    t.fallback.dtype = v;
    t.fallback.dims = {1};
    std::vector<std::byte> bytes(dtype_size(v));
    visit_dtype(v, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_integral_v<T>) {
        T x = std::is_same_v<T, bool> ? T(value != 0) : T(value);
        std::memcpy(bytes.data(), &x, sizeof x);
      }
    });
    t.fallback.data = Buffer::from_bytes(std::move(bytes));
  }
  t.fallback.dims = {1};
  return t;
}

TreeEnsembleAttrs tree_ensemble_attrs(const Node& node) {
  const Attributes& a = node.attrs;
  TreeEnsembleAttrs t;
  t.split = floats_of_tensor(node, "nodes_splits");
  size_t n = t.split.size();
  if (n == 0) node_error(node, "'nodes_splits' is required and must not be empty");
  t.feature = ints_attr(node, "nodes_featureids", n);
  t.true_id = ints_attr(node, "nodes_truenodeids", n);
  t.false_id = ints_attr(node, "nodes_falsenodeids", n);
  t.true_leaf = flags(ints_attr(node, "nodes_trueleafs", n));
  t.false_leaf = flags(ints_attr(node, "nodes_falseleafs", n));
  t.missing_tracks_true = a.has("nodes_missing_value_tracks_true") ? flags(ints_attr(node, "nodes_missing_value_tracks_true", n))
                                                                   : std::vector<bool>(n, false);
  const TensorData* modes = a.get_tensor("nodes_modes");
  if (!modes || modes->dtype != DType::kUInt8 || modes->numel() != int64_t(n))
    node_error(node, "'nodes_modes' must be a uint8 tensor of ", n, " modes, one per node");
  for (int64_t m : read_ints(*modes)) {
    if (m > int64_t(TreeMode::kMember)) node_error(node, "nodes_modes holds ", m, "; modes are 0 (BRANCH_LEQ) to 6 (BRANCH_MEMBER)");
    t.mode.push_back(TreeMode(m));
  }
  t.leaf_weight = floats_of_tensor(node, "leaf_weights");
  t.leaf_target = ints_attr(node, "leaf_targetids", t.leaf_weight.size());
  t.roots = a.get_ints("tree_roots");
  if (t.roots.empty()) node_error(node, "'tree_roots' is required and must not be empty");
  int64_t targets = a.get_int("n_targets", -1);
  if (targets < 0)
    for (int64_t id : t.leaf_target) targets = std::max(targets, id + 1);
  if (targets < 1 || targets > (int64_t(1) << 24)) node_error(node, "n_targets ", targets, " is not between 1 and 2^24");
  t.n_targets = targets;
  for (int64_t id : t.leaf_target)
    if (id < 0 || id >= targets) node_error(node, "leaf_targetids holds ", id, "; targets are 0 to ", targets - 1);
  int64_t aggregate = a.get_int("aggregate_function", 1), post = a.get_int("post_transform", 0);
  if (aggregate < 0 || aggregate > 3) node_error(node, "aggregate_function ", aggregate, " is not 0 (AVERAGE) to 3 (MAX)");
  if (post < 0 || post > 4) node_error(node, "post_transform ", post, " is not 0 (NONE) to 4 (PROBIT)");
  t.aggregate = TreeAggregate(aggregate);
  t.post_transform = TreePostTransform(post);

  // Set members: membership_values lists each member node's set in node order, each ended by a NaN.
  std::vector<double> members = floats_of_tensor(node, "membership_values");
  t.members.resize(n);
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    if (t.mode[i] != TreeMode::kMember) continue;
    while (at < members.size() && !std::isnan(members[at])) t.members[i].push_back(members[at++]);
    if (at == members.size()) node_error(node, "membership_values has no NaN-ended set for set-membership node ", i);
    ++at;
  }
  if (at != members.size()) node_error(node, "membership_values holds more sets than the tree has set-membership nodes");

  size_t leaves = t.leaf_weight.size();
  for (size_t i = 0; i < n; ++i) {
    if (t.feature[i] < 0) node_error(node, "nodes_featureids holds ", t.feature[i], " at node ", i);
    t.max_feature = std::max(t.max_feature, t.feature[i]);
    for (bool branch : {true, false}) {
      int64_t id = branch ? t.true_id[i] : t.false_id[i];
      size_t limit = (branch ? t.true_leaf[i] : t.false_leaf[i]) ? leaves : n;
      if (id < 0 || uint64_t(id) >= limit)
        node_error(node, "node ", i, "'s ", branch ? "true" : "false", " branch ", id, " is not a ",
                   limit == leaves ? "leaf" : "node", " (there are ", limit, ")");
    }
  }
  // Every path from a root must reach leaves: a depth-first walk that meets a node on its own path has found a loop.
  std::vector<uint8_t> state(n, 0);  // 0 unseen, 1 on the current path, 2 done
  for (int64_t root : t.roots) {
    if (root < 0 || uint64_t(root) >= n) node_error(node, "tree_roots holds ", root, "; there are ", n, " nodes");
    if (tree_is_leaf(t, root)) {
      if (uint64_t(root) >= leaves) node_error(node, "the one-leaf tree at ", root, " has no leaf ", root);
      continue;
    }
    std::vector<std::pair<int64_t, int>> stack{{root, 0}};
    while (!stack.empty()) {
      auto& [i, next] = stack.back();
      if (next == 0) {
        if (state[size_t(i)] == 2) {
          stack.pop_back();
          continue;
        }
        state[size_t(i)] = 1;
      }
      if (next == 2) {
        state[size_t(i)] = 2;
        stack.pop_back();
        continue;
      }
      bool branch_true = next++ == 0;
      if (branch_true ? t.true_leaf[size_t(i)] : t.false_leaf[size_t(i)]) continue;
      int64_t child = branch_true ? t.true_id[size_t(i)] : t.false_id[size_t(i)];
      if (state[size_t(child)] == 1) node_error(node, "the tree at root ", root, " loops back to node ", child);
      if (state[size_t(child)] == 0) stack.push_back({child, 0});
    }
  }
  return t;
}

bool tree_is_leaf(const TreeEnsembleAttrs& t, int64_t root) {
  size_t r = size_t(root);
  return t.true_leaf[r] && t.false_leaf[r] && t.true_id[r] == t.false_id[r];
}

}  // namespace kiln::ir
