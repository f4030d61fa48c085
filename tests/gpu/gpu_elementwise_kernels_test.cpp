// The elementwise and cast kernels' paths against the reference interpreter on
// seeded random non-zero data, fp32, fp16 and bf16, generic and
// shape-specialized kernels: packs over contiguous inputs (sizes below, at and
// around the vector width, with and without a tail), packs along the innermost
// dim of broadcasts (bias, per-channel scale, attention mask, scalar), the
// element path where no pack fits, mixed dtypes (bool conditions, int64 casts,
// integer ops), and user buffers that start off the packs' alignment.
#include <cuda_runtime_api.h>

#include "gpu_test_util.h"
#include "kiln/error.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;
using P = plan::Precision;
using S = runtime::KernelSpecialization;

double tolerance(P precision) { return precision == P::kFloat32 ? 2e-5 : precision == P::kFloat16 ? 2e-2 : 6e-2; }

// A network under construction with random data for each of its inputs.
struct Case {
  explicit Case(uint32_t seed) : rng(seed) {}
  ValueId input(const std::string& name, DType dtype, const std::vector<int64_t>& dims) {
    if (is_floating(dtype)) return add(name, random_tensor(dtype, dims, rng));
    std::uniform_int_distribution<int> small(-50, 50);
    std::vector<double> v(size_t(ir::checked_numel(dims)));
    for (double& x : v) x = dtype == DType::kBool ? double(rng() % 2) : double(small(rng) * 2 + 1);  // odd: never 0
    return add(name, reference::make_tensor(dtype, dims, v));
  }
  // Floats exact in fp16 and bf16, a quarter off an integer: truncation agrees in every precision.
  ValueId quarters(const std::string& name, const std::vector<int64_t>& dims) {
    std::uniform_int_distribution<int> whole(-40, 40);
    std::vector<double> v(size_t(ir::checked_numel(dims)));
    for (double& x : v) x = whole(rng) + (rng() % 2 ? 0.25 : -0.25);
    return add(name, reference::make_tensor(DType::kFloat32, dims, v));
  }
  ValueId add(const std::string& name, ir::TensorData data) {
    std::vector<Dim> shape;
    for (int64_t d : data.dims) shape.push_back(Dim(d));
    ValueId id = net.add_input(name, data.dtype, shape);
    inputs[name] = std::move(data);
    return id;
  }
  ValueId op(OpKind kind, std::vector<ValueId> args, ir::Attributes a = {}) { return net.add_op1(kind, std::move(args), std::move(a)); }
  ValueId cast(ValueId x, DType to) { return op(OpKind::kCast, {x}, attrs({{"to", int64_t(to)}})); }

  std::mt19937 rng;
  ir::Network net;
  std::map<std::string, ir::TensorData> inputs;
};

// Float outputs within tolerance of the largest reference magnitude; integer and bool outputs exactly.
void expect_match(const std::vector<ir::TensorData>& got, const std::vector<ir::TensorData>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(str("output ", i));
    ASSERT_EQ(got[i].dtype, want[i].dtype);
    if (is_floating(got[i].dtype)) {
      expect_outputs_close({got[i]}, {want[i]}, tol);
      continue;
    }
    ASSERT_EQ(got[i].dims, want[i].dims);
    std::vector<int64_t> a = ir::read_ints(got[i]), b = ir::read_ints(want[i]);
    for (size_t k = 0; k < a.size(); ++k) ASSERT_EQ(a[k], b[k]) << "element " << k;
  }
}

void check(Case& c, P precision, S strategy, const std::string& label) {
  SCOPED_TRACE(str(label, " ", plan::precision_name(precision), " ", spec_name(strategy)));
  c.net.finalize();
  expect_match(run_on_gpu(c.net, c.inputs, precision, strategy), reference::run(c.net, c.inputs), tolerance(precision));
}

class GpuElementwiseKernels : public ::testing::TestWithParam<std::tuple<P, S>> {};

// Inputs of the output's shape: n below the width, at it, and with tails
// (8 halves or 4 floats a pack), flat and of rank 2 and 3 (one dim once coalesced).
TEST_P(GpuElementwiseKernels, ContiguousSizes) {
  KILN_REQUIRE_GPU();
  auto [precision, strategy] = GetParam();
  Case c(101);
  std::vector<std::vector<int64_t>> shapes = {{1}, {7}, {8}, {1000}, {4096}, {100003}, {17, 59}, {3, 5, 67}};
  for (size_t s = 0; s < shapes.size(); ++s) {
    ValueId x = c.input(str("x", s), DType::kFloat32, shapes[s]), y = c.input(str("y", s), DType::kFloat32, shapes[s]);
    c.net.add_output(c.op(OpKind::kAdd, {c.op(OpKind::kMul, {c.op(OpKind::kSigmoid, {x}), y}), x}));  // a fused chain
    c.net.add_output(c.op(OpKind::kSub, {x, y}));                                                       // a single op
  }
  check(c, precision, strategy, "contiguous");
}

// Broadcasts whose innermost dim holds whole packs (vector loads and one-load
// broadcasts) and ones where it does not (the element path).
TEST_P(GpuElementwiseKernels, Broadcasts) {
  KILN_REQUIRE_GPU();
  auto [precision, strategy] = GetParam();
  Case c(202);
  auto binary = [&](OpKind kind, const std::string& name, const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
    ValueId x = c.input(name + "_a", DType::kFloat32, a), y = c.input(name + "_b", DType::kFloat32, b);
    c.net.add_output(c.op(kind, {x, y}));
    c.net.add_output(c.op(OpKind::kMul, {c.op(OpKind::kTanh, {c.op(kind, {x, y})}), x}));
  };
  binary(OpKind::kAdd, "bias", {2, 49, 96}, {96});             // [N, HW, C] + [C]
  binary(OpKind::kAdd, "bias_odd", {2, 5, 7}, {7});            // C not a multiple of the width
  binary(OpKind::kMul, "scale", {2, 16, 8, 8}, {16, 1, 1});    // [N, C, H, W] * [C, 1, 1]: a lane-broadcast operand
  binary(OpKind::kMul, "scale_7x7", {2, 16, 7, 7}, {16, 1, 1});
  binary(OpKind::kAdd, "mask", {2, 4, 16, 16}, {2, 1, 1, 16});  // [B, H, S, S] + [B, 1, 1, S]
  binary(OpKind::kAdd, "mask_17", {1, 2, 17, 17}, {1, 1, 1, 17});
  binary(OpKind::kMul, "scalar", {1003}, {1});                  // one dim with a tail
  binary(OpKind::kAdd, "scalar_3d", {2, 3, 5}, {1});
  binary(OpKind::kSub, "column", {6, 32}, {6, 1});
  binary(OpKind::kAdd, "both", {4, 1, 8}, {1, 3, 8});
  binary(OpKind::kDiv, "scalar_first", {1}, {5, 40});
  check(c, precision, strategy, "broadcasts");
}

// Operands of several dtypes in one kernel: a bool condition beside floats,
// int64 casts both ways, integer arithmetic, bool logic (16 one-byte lanes).
TEST_P(GpuElementwiseKernels, MixedDtypes) {
  KILN_REQUIRE_GPU();
  auto [precision, strategy] = GetParam();
  Case c(303);
  ValueId x = c.input("x", DType::kFloat32, {2, 8, 16}), y = c.input("y", DType::kFloat32, {2, 8, 16});
  ValueId cond = c.input("cond", DType::kBool, {2, 1, 16}), flat_cond = c.input("flat_cond", DType::kBool, {2, 8, 16});
  c.net.add_output(c.op(OpKind::kWhere, {cond, x, y}));
  c.net.add_output(c.op(OpKind::kWhere, {flat_cond, c.op(OpKind::kExp, {x}), c.op(OpKind::kNeg, {y})}));
  ValueId ints = c.input("ints", DType::kInt64, {3, 40}), floats = c.input("floats", DType::kFloat32, {3, 40});
  c.net.add_output(c.op(OpKind::kMul, {c.cast(ints, DType::kFloat32), floats}));
  ValueId q = c.quarters("q", {1001});
  c.net.add_output(c.cast(q, DType::kInt64));
  c.net.add_output(c.cast(q, DType::kInt32));
  c.net.add_output(c.cast(q, DType::kBool));
  ValueId a32 = c.input("a32", DType::kInt32, {5, 64}), b32 = c.input("b32", DType::kInt32, {64});
  c.net.add_output(c.op(OpKind::kAdd, {a32, b32}));
  c.net.add_output(c.cast(a32, DType::kFloat32));
  ValueId a64 = c.input("a64", DType::kInt64, {1001}), b64 = c.input("b64", DType::kInt64, {1001});
  c.net.add_output(c.op(OpKind::kMul, {a64, b64}));
  ValueId p = c.input("p", DType::kBool, {1000}), r = c.input("r", DType::kBool, {1000});
  c.net.add_output(c.op(OpKind::kAnd, {p, r}));
  c.net.add_output(c.op(OpKind::kNot, {p}));
  c.net.add_output(c.cast(p, DType::kFloat32));
  c.net.add_output(c.op(OpKind::kLess, {q, c.quarters("q2", {1001})}));  // exact operands: no precision flips the order
  check(c, precision, strategy, "mixed dtypes");
}

INSTANTIATE_TEST_SUITE_P(
    PrecisionsAndSpecialization, GpuElementwiseKernels,
    ::testing::Combine(::testing::Values(P::kFloat32, P::kFloat16, P::kBFloat16), ::testing::Values(S::kNone, S::kEager)),
    [](const auto& info) {
      return std::string(plan::precision_name(std::get<0>(info.param))) + "_" + spec_name(std::get<1>(info.param));
    });

// `net` built for exactly the inputs' shapes and run once on shifted caller buffers.
std::vector<ir::TensorData> run_shifted(const ir::Network& net, const std::map<std::string, ir::TensorData>& inputs,
                                        P precision, S strategy, int64_t in_shift, int64_t out_shift) {
  auto engine = engine_for(net, inputs, precision, strategy);
  auto context = engine->create_context();
  return run_on_shifted_buffers(*context, net, inputs, in_shift, out_shift);
}

class GpuElementwiseShifted : public ::testing::TestWithParam<std::tuple<DType, S>> {};

// A network in `dtype` reads and writes user buffers directly: inputs one
// element off the pack alignment, then outputs; the kernels must fall back to
// their element path (contiguous, broadcast, and the fp32-in/fp16 casts at the edges).
TEST_P(GpuElementwiseShifted, MisalignedUserBuffers) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  for (auto [in_shift, out_shift] : {std::pair<int64_t, int64_t>{1, 0}, {0, 1}, {3, 5}}) {
    Case c(404);
    ValueId x = c.input("x", dtype, {1000}), y = c.input("y", dtype, {1000});
    ValueId a = c.input("a", dtype, {4, 64}), b = c.input("b", dtype, {64});
    c.net.add_output(c.op(OpKind::kAdd, {c.op(OpKind::kMul, {x, y}), x}));
    c.net.add_output(c.op(OpKind::kMul, {c.op(OpKind::kAdd, {a, b}), a}));
    c.net.finalize();
    std::vector<ir::TensorData> want = reference::run(c.net, c.inputs);
    // fp32 networks also at fp16: the entry and exit casts meet the shifted buffers.
    for (P precision : dtype == DType::kFloat32 ? std::vector<P>{P::kFloat32, P::kFloat16} : std::vector<P>{P::kFloat32}) {
      SCOPED_TRACE(str(dtype_name(dtype), " at ", plan::precision_name(precision), " ", spec_name(strategy), ", inputs +",
                       in_shift, " outputs +", out_shift));
      double tol = precision == P::kFloat16 || dtype == DType::kFloat16 ? 2e-2 : dtype == DType::kBFloat16 ? 6e-2 : 2e-5;
      expect_match(run_shifted(c.net, c.inputs, precision, strategy, in_shift, out_shift), want, tol);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    DtypesAndSpecialization, GpuElementwiseShifted,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                       ::testing::Values(S::kNone, S::kEager)),
    [](const auto& info) { return std::string(dtype_name(std::get<0>(info.param))) + "_" + spec_name(std::get<1>(info.param)); });

}  // namespace
}  // namespace kiln::testing
