// ScatterND, ScatterElements and GatherND on the GPU against the reference
// interpreter: seeded random non-zero data and indices (negative ones
// included), fp32 and fp16 plans and int64 and int32 data, int64 and int32
// indices, generic and shape-specialized kernels. Without a reduction the
// indices never repeat (ONNX leaves the result of duplicates undefined); with
// one they do, and every duplicate must be applied.
#include <algorithm>
#include <map>
#include <numeric>

#include "gpu_test_util.h"

namespace kiln::testing {
namespace {

using ir::OpKind;
using P = plan::Precision;

struct IndexedCase {
  std::string name;
  OpKind op;
  std::vector<int64_t> data, indices;
  DType index_dtype;
  std::string reduction = "none";
  int64_t axis = 0;        // ScatterElements
  int64_t batch_dims = 0;  // GatherND

  bool scatter() const { return op != OpKind::kGatherND; }
  // ScatterND's updates: indices.shape[:-1] + data.shape[k:]; ScatterElements': the indices' shape.
  std::vector<int64_t> updates() const {
    if (op == OpKind::kScatterElements) return indices;
    std::vector<int64_t> u(indices.begin(), indices.end() - 1);
    u.insert(u.end(), data.begin() + indices.back(), data.end());
    return u;
  }
};

// Index k of a dim of size n, written as its negative twin half of the time.
double maybe_negative(int64_t k, int64_t n, std::mt19937& rng) { return double(rng() % 2 ? k - n : k); }

// Random valid indices for the case; distinct targets unless the case reduces.
std::vector<double> random_indices(const IndexedCase& c, std::mt19937& rng) {
  bool distinct = c.scatter() && c.reduction == "none";
  std::vector<double> out;
  if (c.op == OpKind::kScatterElements) {
    size_t axis = size_t(c.axis < 0 ? c.axis + int64_t(c.data.size()) : c.axis);
    int64_t n = c.data[axis];
    auto st = ir::strides_of(c.indices);
    std::map<int64_t, std::vector<int64_t>> lines;  // per line along the axis, a permutation of the axis
    for (int64_t i = 0; i < ir::checked_numel(c.indices); ++i) {
      int64_t along = (i / st[axis]) % c.indices[axis], line = i - along * st[axis];
      auto& perm = lines[line];
      if (perm.empty()) {
        perm.resize(size_t(n));
        std::iota(perm.begin(), perm.end(), 0);
        std::shuffle(perm.begin(), perm.end(), rng);
      }
      out.push_back(maybe_negative(distinct ? perm[size_t(along)] : int64_t(rng() % uint64_t(n)), n, rng));
    }
    return out;
  }
  size_t first = size_t(c.batch_dims), k = size_t(c.indices.back());
  std::vector<int64_t> dims(c.data.begin() + int64_t(first), c.data.begin() + int64_t(first + k));
  int64_t space = ir::checked_numel(dims), tuples = ir::checked_numel(c.indices) / int64_t(k);
  std::vector<int64_t> order(static_cast<size_t>(space));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  if (distinct && tuples > space) ADD_FAILURE() << c.name << ": " << tuples << " distinct tuples in a space of " << space;
  auto st = ir::strides_of(dims);
  for (int64_t t = 0; t < tuples; ++t) {
    int64_t flat = distinct ? order[size_t(t % space)] : int64_t(rng() % uint64_t(space));
    for (size_t d = 0; d < k; ++d) out.push_back(maybe_negative((flat / st[d]) % dims[d], dims[d], rng));
  }
  return out;
}

// Non-zero values: +-[0.1, 1) for floats, +-[1, 4] for integers (products of duplicates stay exact).
ir::TensorData random_values(DType dtype, const std::vector<int64_t>& dims, std::mt19937& rng) {
  if (is_floating(dtype)) return random_tensor(dtype, dims, rng);
  std::vector<double> v(size_t(ir::checked_numel(dims)));
  for (auto& x : v) x = double(rng() % 4 + 1) * (rng() % 2 ? 1 : -1);
  return reference::make_tensor(dtype, dims, v);
}

std::vector<IndexedCase> cases() {
  std::vector<IndexedCase> c;
  // Slices of the last dim, and single elements (full index tuples) with int32 indices.
  c.push_back({"scatter_nd_slices", OpKind::kScatterND, {6, 5, 4}, {3, 4, 2}, DType::kInt64});
  c.push_back({"scatter_nd_elements_int32", OpKind::kScatterND, {5, 7}, {9, 2}, DType::kInt32});
  // 10 rows of updates into 4 rows of data: every row is hit more than once.
  for (const char* r : {"add", "mul", "max", "min"}) {
    c.push_back({str("scatter_nd_", r), OpKind::kScatterND, {4, 6}, {10, 1}, DType::kInt64, r});
    c.push_back({str("scatter_nd_elements_", r), OpKind::kScatterND, {3, 3, 2}, {12, 3}, DType::kInt32, r});
  }
  // Along the middle axis, the indices smaller than the data off the axis.
  c.push_back({"scatter_elements_axis1", OpKind::kScatterElements, {4, 6, 5}, {3, 3, 5}, DType::kInt32, "none", 1});
  for (const char* r : {"add", "mul", "max", "min"})
    c.push_back({str("scatter_elements_", r), OpKind::kScatterElements, {3, 4, 6}, {3, 2, 9}, DType::kInt64, r, -1});
  c.push_back({"gather_nd_batch1", OpKind::kGatherND, {3, 5, 4, 6}, {3, 7, 2}, DType::kInt64, "none", 0, 1});
  c.push_back({"gather_nd_rows_int32", OpKind::kGatherND, {5, 4}, {6, 1}, DType::kInt32});
  c.push_back({"gather_nd_elements", OpKind::kGatherND, {2, 3, 4}, {2, 5, 3}, DType::kInt64});
  return c;
}

ir::Network network(const IndexedCase& c, DType dtype) {
  ir::Network net;
  std::vector<ir::ValueId> in{net.add_input("x", dtype, ir::shape_of(c.data)), net.add_input("i", c.index_dtype, ir::shape_of(c.indices))};
  if (c.scatter()) in.push_back(net.add_input("u", dtype, ir::shape_of(c.updates())));
  ir::Attributes a;
  if (c.scatter()) a.set("reduction", c.reduction);
  if (c.op == OpKind::kScatterElements) a.set("axis", c.axis);
  if (c.op == OpKind::kGatherND) a.set("batch_dims", c.batch_dims);
  net.add_output(net.add_op1(c.op, in, a, c.name));
  net.finalize();
  return net;
}

// The inputs of case `c` for data of `dtype`.
std::map<std::string, ir::TensorData> case_inputs(const IndexedCase& c, DType dtype, std::mt19937& rng) {
  std::map<std::string, ir::TensorData> inputs{{"x", random_values(dtype, c.data, rng)},
                                               {"i", reference::make_tensor(c.index_dtype, c.indices, random_indices(c, rng))}};
  if (c.scatter()) inputs["u"] = random_values(dtype, c.updates(), rng);
  return inputs;
}

// Without a GPU too: the reference accepts every case's indices, and in fp32
// and fp16 plans the GPU runtime has a kernel for every node (none is folded away).
TEST(GpuScatterCases, AreValidAndRunOnTheGpuRuntime) {
  for (const IndexedCase& c : cases()) {
    std::mt19937 rng(4321);
    ir::Network net = network(c, DType::kFloat32);
    auto inputs = case_inputs(c, DType::kFloat32, rng);
    EXPECT_NO_THROW(reference::run(net, inputs)) << c.name;
    for (P precision : {P::kFloat32, P::kFloat16}) {
      builder::BuildOptions options;
      options.precision = precision;
      for (auto& [name, t] : inputs) builder::add_input_profile(net, name, t.dims, t.dims, t.dims, options);
      plan::Plan plan = builder::build(net, options);
      EXPECT_EQ(std::count_if(plan.network.nodes().begin(), plan.network.nodes().end(),
                              [&](const ir::Node& n) { return n.op == c.op; }), 1) << c.name;
      for (const runtime::NodeSupport& s : runtime::gpu_support(plan))
        EXPECT_TRUE(s.supported) << c.name << ": " << s.node << " " << s.reason;
    }
  }
}

// fp32 and fp16 plans of float data; int64 and int32 data (exact), each with
// generic and with shape-specialized kernels.
struct Variant {
  DType dtype;
  P precision;
};

class GpuScatter : public ::testing::TestWithParam<std::tuple<Variant, runtime::KernelSpecialization>> {};

TEST_P(GpuScatter, MatchReference) {
  KILN_REQUIRE_GPU();
  auto [variant, strategy] = GetParam();
  double tol = !is_floating(variant.dtype) ? 0 : variant.precision == P::kFloat32 ? 2e-5 : 2e-2;
  uint32_t seed = 4321;
  for (const IndexedCase& c : cases()) {
    std::mt19937 rng(seed);
    ir::Network net = network(c, variant.dtype);
    expect_gpu_matches_reference(net, case_inputs(c, variant.dtype, rng), variant.precision, tol,
                                 str(c.name, " ", dtype_name(variant.dtype), " ", plan::precision_name(variant.precision), " seed ", seed),
                                 strategy);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Dtypes, GpuScatter,
    ::testing::Combine(::testing::Values(Variant{DType::kFloat32, P::kFloat32}, Variant{DType::kFloat32, P::kFloat16},
                                         Variant{DType::kInt64, P::kFloat32}, Variant{DType::kInt32, P::kFloat32}),
                       ::testing::Values(runtime::KernelSpecialization::kNone, runtime::KernelSpecialization::kEager)),
    [](const auto& info) {
      const Variant& v = std::get<0>(info.param);
      return str(dtype_name(v.dtype), "_", plan::precision_name(v.precision), "_",
                 runtime::kernel_specialization_name(std::get<1>(info.param)));
    });

// An out-of-range index (an error on the CPU reference) writes nothing out of
// bounds on the GPU: the scatter skips it and the rest of the output is right.
TEST(GpuScatter, OutOfRangeIndicesAreSkipped) {
  KILN_REQUIRE_GPU();
  IndexedCase c{"scatter_nd_out_of_range", OpKind::kScatterND, {4, 3}, {3, 1}, DType::kInt64, "add"};
  ir::Network net = network(c, DType::kFloat32);
  builder::BuildOptions options;
  for (auto& [name, dims] : std::vector<std::pair<std::string, std::vector<int64_t>>>{{"x", {4, 3}}, {"i", {3, 1}}, {"u", {3, 3}}})
    builder::add_input_profile(net, name, dims, dims, dims, options);
  auto engine = runtime::Engine::create(builder::build(net, options), {});
  auto context = engine->create_context();
  std::map<std::string, ir::TensorData> inputs{
      {"x", reference::make_tensor(DType::kFloat32, {4, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})},
      {"i", reference::make_tensor(DType::kInt64, {3, 1}, {1, 4, -5})},
      {"u", reference::make_tensor(DType::kFloat32, {3, 3}, {100, 200, 300, 7, 7, 7, 9, 9, 9})}};
  auto out = ir::read_doubles(runtime::run_with_host_tensors(*context, *engine, inputs).at(0));
  EXPECT_EQ(out, (std::vector<double>{1, 2, 3, 104, 205, 306, 7, 8, 9, 10, 11, 12}));
}

}  // namespace
}  // namespace kiln::testing
