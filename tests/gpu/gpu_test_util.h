// Helpers for GPU tests: skip cleanly without a GPU, random networks' inputs,
// and comparison of GPU results with the reference interpreter.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>

#include "kiln/builder.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"
#include "kiln/runtime.h"

namespace kiln::testing {

#define KILN_REQUIRE_GPU()                                   \
  do {                                                       \
    std::string kiln_why_;                                   \
    if (!::kiln::runtime::cuda_available(&kiln_why_)) GTEST_SKIP() << kiln_why_; \
  } while (0)

inline ir::Attributes attrs(std::initializer_list<std::pair<std::string, ir::AttrValue>> list) {
  ir::Attributes a;
  for (auto& [k, v] : list) a.set(k, v);
  return a;
}

inline ir::TensorData random_tensor(DType dtype, const std::vector<int64_t>& dims, std::mt19937& rng, double lo = 0.1,
                                    double hi = 1.0) {
  std::uniform_real_distribution<double> mag(lo, hi);
  std::vector<double> v(size_t(ir::checked_numel(dims)));
  for (auto& x : v) x = mag(rng) * (rng() % 2 ? 1 : -1);
  return reference::make_tensor(dtype, dims, v);
}

// Random integers of `dtype` in [lo, hi], none of them 0 when `nonzero`,
// stored exactly (no trip through double) and wrapped into the dtype's width:
// [INT64_MIN, INT64_MAX] covers all of uint64, values of 2^63 and more included.
inline ir::TensorData random_ints(DType dtype, const std::vector<int64_t>& dims, std::mt19937& rng, int64_t lo, int64_t hi,
                                  bool nonzero = false) {
  if (!is_integer(dtype)) fail(ErrorCode::kInvalidArgument, "random_ints of ", dtype_name(dtype));
  std::uniform_int_distribution<int64_t> pick(lo, hi);
  size_t n = size_t(ir::checked_numel(dims));
  std::vector<std::byte> bytes(n * dtype_size(dtype));
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_integral_v<T>) {
      T* out = reinterpret_cast<T*>(bytes.data());
      for (size_t i = 0; i < n; ++i) {
        int64_t k = pick(rng);
        while (nonzero && T(k) == 0) k = pick(rng);
        out[i] = T(k);
      }
    }
  });
  ir::TensorData t;
  t.dtype = dtype;
  t.dims = dims;
  t.data = Buffer::from_bytes(std::move(bytes));
  return t;
}

// The values an integer dtype holds, for random_ints (uint64: every bit pattern, through the wrap).
inline std::pair<int64_t, int64_t> int_range(DType dtype) {
  switch (dtype) {
    case DType::kUInt8: return {0, 255};
    case DType::kInt8: return {-128, 127};
    case DType::kUInt16: return {0, 65535};
    case DType::kInt16: return {-32768, 32767};
    case DType::kUInt32: return {0, 4294967295LL};
    case DType::kInt32: return {-2147483648LL, 2147483647LL};
    case DType::kUInt64: return {INT64_MIN, INT64_MAX};
    default: return {-(int64_t(1) << 62), int64_t(1) << 62};
  }
}

// x[batch, 32] -> 2 x (Linear + GELU) -> softmax; batch in [1, 8], opt 2.
inline ir::Network small_test_model(std::mt19937& rng) {
  using ir::Dim;
  using ir::OpKind;
  ir::Network net;
  ir::ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("batch"), Dim(32)});
  for (int i = 0; i < 2; ++i) {
    ir::ValueId w = net.add_weight(str("w", i), random_tensor(DType::kFloat32, {32, 32}, rng));
    ir::ValueId b = net.add_weight(str("b", i), random_tensor(DType::kFloat32, {32}, rng));
    x = net.add_op1(OpKind::kGelu, {net.add_op1(OpKind::kAdd, {net.add_op1(OpKind::kMatMul, {x, w}), b})});
  }
  net.add_output(net.add_op1(OpKind::kSoftmax, {x}));
  net.set_dim_range("batch", {1, 2, 8});
  net.finalize();
  return net;
}

// Builds `net` at `precision` for exactly the shapes of `inputs`, runs it on the
// GPU and checks every output against the reference run of `net` within
// tolerance relative to the largest reference magnitude of that output.
// Every output within tolerance * (its largest finite reference magnitude), no
// NaN the reference lacks, and an infinity exactly where the reference has one
// (a float16 dequantization overflows to it); with `exact_integers`, integer
// and bool outputs equal to the reference's. String outputs are always exact.
inline void expect_outputs_close(const std::vector<ir::TensorData>& got, const std::vector<ir::TensorData>& want, double tolerance,
                                 bool exact_integers = false) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].dims, want[i].dims) << "output " << i;
    if (is_string(want[i].dtype)) {
      ASSERT_EQ(got[i].dtype, want[i].dtype) << "output " << i;
      EXPECT_EQ(got[i].strings, want[i].strings) << "output " << i;
      continue;
    }
    if (exact_integers && !is_floating(want[i].dtype)) {
      ASSERT_EQ(got[i].dtype, want[i].dtype) << "output " << i;
      EXPECT_EQ(ir::read_ints(got[i]), ir::read_ints(want[i])) << "output " << i;
      continue;
    }
    auto a = ir::read_doubles(got[i]), b = ir::read_doubles(want[i]);
    double scale = 0;
    for (double x : b)
      if (std::isfinite(x)) scale = std::max(scale, std::fabs(x));
    for (size_t k = 0; k < a.size(); ++k) {
      ASSERT_EQ(std::isnan(a[k]), std::isnan(b[k])) << "output " << i << " element " << k << ": " << a[k] << ", expected " << b[k];
      if (std::isnan(b[k])) continue;  // any NaN for a NaN: its sign and payload are not part of any op's contract
      if (std::isinf(b[k])) {
        ASSERT_EQ(a[k], b[k]) << "output " << i << " element " << k;
        continue;
      }
      ASSERT_NEAR(a[k], b[k], tolerance * std::max(scale, 1e-3)) << "output " << i << " element " << k;
    }
  }
}

using Feeds = std::map<std::string, ir::TensorData>;

// Gives every input of `net` a profile spanning its shapes in `runs` (opt: the first run's).
inline void add_profiles_spanning(const ir::Network& net, const std::vector<Feeds>& runs, builder::BuildOptions& options) {
  for (ir::ValueId id : net.inputs()) {
    const std::string& name = net.value(id).name;
    std::vector<int64_t> lo = runs[0].at(name).dims, hi = lo;
    for (const Feeds& f : runs)
      for (size_t d = 0; d < lo.size(); ++d) {
        lo[d] = std::min(lo[d], f.at(name).dims[d]);
        hi[d] = std::max(hi[d], f.at(name).dims[d]);
      }
    builder::add_input_profile(net, name, lo, runs[0].at(name).dims, hi, options);
  }
}

inline ir::ValueId scalar(ir::Network& net, const std::string& name, DType dtype, double v) {
  return net.add_weight(name, reference::make_tensor(dtype, {}, {v}));
}

// Builds `net` at `precision` with one profile spanning the shapes of `runs`
// (sizes that follow from data bounded by `data_dependent_bound` where given),
// checks that the plan still holds `op` (the builder neither folded it nor
// rewrote it away) and that the GPU runs every node, then runs each feed on
// one context and compares with the reference (integer outputs exactly where
// `exact_integers`).
inline void expect_op_matches_reference(const ir::Network& net, ir::OpKind op, const std::vector<Feeds>& runs,
                                        plan::Precision precision, runtime::KernelSpecialization strategy, double tolerance,
                                        int64_t data_dependent_bound = -1, bool exact_integers = false) {
  builder::BuildOptions options;
  options.precision = precision;
  options.default_data_dependent_bound = data_dependent_bound;
  add_profiles_spanning(net, runs, options);
  plan::Plan plan = builder::build(net, options);
  const auto& nodes = plan.network.nodes();
  ASSERT_TRUE(std::any_of(nodes.begin(), nodes.end(), [op](const ir::Node& n) { return n.op == op; }))
      << ir::op_name(op) << " is not in the plan:\n" << ir::dump_network(plan.network);
  for (const runtime::NodeSupport& s : runtime::gpu_support(plan)) ASSERT_TRUE(s.supported) << s.node << ": " << s.reason;
  runtime::RuntimeConfig config;
  config.dynamic_shapes_kernel_specialization_strategy = strategy;
  auto engine = runtime::Engine::create(plan, config);
  auto context = engine->create_context();
  for (size_t i = 0; i < runs.size(); ++i) {
    SCOPED_TRACE(str("run ", i));
    expect_outputs_close(runtime::run_with_host_tensors(*context, *engine, runs[i]), reference::run(net, runs[i]), tolerance,
                         exact_integers);
  }
}

// An engine of `net` built at `precision` for exactly the shapes of `inputs`.
inline std::shared_ptr<runtime::Engine> engine_for(const ir::Network& net, const std::map<std::string, ir::TensorData>& inputs,
                                                   plan::Precision precision, runtime::KernelSpecialization strategy) {
  builder::BuildOptions options;
  options.precision = precision;
  for (ir::ValueId id : net.inputs()) {
    const auto& dims = inputs.at(net.value(id).name).dims;
    builder::add_input_profile(net, net.value(id).name, dims, dims, dims, options);
  }
  runtime::RuntimeConfig config;
  config.dynamic_shapes_kernel_specialization_strategy = strategy;
  return runtime::Engine::create(builder::build(net, options), config);
}

// `net` built at `precision` for exactly the shapes of `inputs`, run once on the GPU.
inline std::vector<ir::TensorData> run_on_gpu(const ir::Network& net, const std::map<std::string, ir::TensorData>& inputs,
                                              plan::Precision precision, runtime::KernelSpecialization strategy) {
  auto engine = engine_for(net, inputs, precision, strategy);
  auto context = engine->create_context();
  return runtime::run_with_host_tensors(*context, *engine, inputs);
}

inline void expect_gpu_matches_reference(const ir::Network& net, const std::map<std::string, ir::TensorData>& inputs,
                                         plan::Precision precision, double tolerance, const std::string& label,
                                         runtime::KernelSpecialization strategy = runtime::KernelSpecialization::kNone) {
  SCOPED_TRACE(label);
  expect_outputs_close(run_on_gpu(net, inputs, precision, strategy), reference::run(net, inputs), tolerance);
}

// Outputs that must match the reference bit for bit: integers (doubles would
// hide the low bits of 64-bit values) and exactly rounded float results.
inline void expect_gpu_matches_reference_exactly(const ir::Network& net, const std::map<std::string, ir::TensorData>& inputs,
                                                 runtime::KernelSpecialization strategy, const std::string& label) {
  SCOPED_TRACE(label);
  std::vector<ir::TensorData> got = run_on_gpu(net, inputs, plan::Precision::kFloat32, strategy),
                              want = reference::run(net, inputs);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].dtype, want[i].dtype) << "output " << i;
    ASSERT_EQ(got[i].dims, want[i].dims) << "output " << i;
    ASSERT_EQ(got[i].data.size(), want[i].data.size()) << "output " << i;
    if (is_floating(got[i].dtype)) {
      std::vector<double> a = ir::read_doubles(got[i]), b = ir::read_doubles(want[i]);
      for (size_t k = 0; k < a.size(); ++k) {
        if (std::isnan(b[k])) ASSERT_TRUE(std::isnan(a[k])) << "output " << i << " element " << k << ": " << a[k] << ", expected NaN";
        else ASSERT_EQ(a[k], b[k]) << "output " << i << " element " << k;
      }
    } else if (is_narrow_float(got[i].dtype)) {  // the same bits, but any NaN for a NaN
      std::vector<double> a = ir::read_doubles(got[i]), b = ir::read_doubles(want[i]);
      const uint8_t *got_bits = got[i].data.as<uint8_t>(), *want_bits = want[i].data.as<uint8_t>();
      for (size_t k = 0; k < a.size(); ++k) {
        if (std::isnan(b[k])) ASSERT_TRUE(std::isnan(a[k])) << "output " << i << " element " << k;
        else ASSERT_EQ(int(got_bits[k]), int(want_bits[k])) << "output " << i << " element " << k << " (" << a[k] << ", expected " << b[k] << ")";
      }
    } else {
      std::vector<int64_t> a = ir::read_ints(got[i]), b = ir::read_ints(want[i]);
      for (size_t k = 0; k < a.size(); ++k) ASSERT_EQ(a[k], b[k]) << "output " << i << " element " << k;
    }
  }
}

inline const char* spec_name(runtime::KernelSpecialization s) {
  return s == runtime::KernelSpecialization::kNone ? "generic" : "specialized";
}

// Device memory freed when it goes out of scope; an empty tensor still gets an address.
struct DeviceMemory {
  void* ptr = nullptr;
  explicit DeviceMemory(size_t bytes) {
    if (cudaMalloc(&ptr, std::max<size_t>(bytes, 256)) != cudaSuccess)
      fail(ErrorCode::kDevice, "cudaMalloc of ", bytes, " bytes for a test tensor");
  }
  ~DeviceMemory() { cudaFree(ptr); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
};

// Runs the context once on caller buffers: each input `in_shift` and each
// output `out_shift` elements of its own type past the start of its
// allocation (cudaMalloc's are 256-byte aligned), as a caller's views may
// start. The runtime's own intermediates live in its aligned arena, so only
// these buffers start anywhere. Outputs start as NaN bytes: elements a kernel
// leaves unwritten show.
inline std::vector<ir::TensorData> run_on_shifted_buffers(runtime::ExecutionContext& context, const ir::Network& net,
                                                          const std::map<std::string, ir::TensorData>& inputs, int64_t in_shift,
                                                          int64_t out_shift) {
  std::vector<std::unique_ptr<DeviceMemory>> memory;
  auto place = [&](const std::string& name, size_t bytes, DType dtype, int64_t shift) {
    size_t skip = size_t(shift) * dtype_size(dtype);
    memory.push_back(std::make_unique<DeviceMemory>(bytes + skip));
    char* at = static_cast<char*>(memory.back()->ptr) + skip;
    context.set_tensor_address(name, at);
    return at;
  };
  for (ir::ValueId id : net.inputs()) {
    const ir::TensorData& t = inputs.at(net.value(id).name);
    context.set_input_shape(net.value(id).name, t.dims);
    EXPECT_EQ(cudaMemcpy(place(net.value(id).name, t.data.size(), t.dtype, in_shift), t.data.data(), t.data.size(),
                         cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  std::vector<ir::TensorData> outputs;
  std::vector<char*> addresses;
  for (ir::ValueId id : net.outputs()) {
    ir::TensorData t;
    t.dtype = net.value(id).dtype;
    t.dims = context.tensor_shape(net.value(id).name);
    size_t bytes = size_t(t.numel()) * dtype_size(t.dtype);
    addresses.push_back(place(net.value(id).name, bytes, t.dtype, out_shift));
    EXPECT_EQ(cudaMemset(addresses.back(), 0xff, bytes), cudaSuccess);
    outputs.push_back(std::move(t));
  }
  context.enqueue(nullptr);
  EXPECT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);
  for (size_t i = 0; i < outputs.size(); ++i) {
    std::vector<std::byte> host(size_t(outputs[i].numel()) * dtype_size(outputs[i].dtype));
    EXPECT_EQ(cudaMemcpy(host.data(), addresses[i], host.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    outputs[i].data = Buffer::from_bytes(std::move(host));
  }
  return outputs;
}

// Enqueue into a capture on `stream` must be refused (kInvalidArgument, a
// message holding `says`) before it records anything: the capture stays valid.
inline void expect_capture_refused(runtime::ExecutionContext& context, cudaStream_t stream, const std::string& says) {
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  try {
    context.enqueue(stream);
    ADD_FAILURE() << "enqueued into a capture";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
  }
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  if (graph) cudaGraphDestroy(graph);
}

inline ir::TensorData int64s(const std::vector<int64_t>& dims, const std::vector<int64_t>& v) {
  return reference::make_tensor(DType::kInt64, dims, std::vector<double>(v.begin(), v.end()));
}

// A network of nodes over inputs fed by the tensors given, each node an output where the test adds it as one.
struct OpNetwork {
  ir::Network net;
  Feeds feeds;
  ir::ValueId input(const std::string& name, ir::TensorData t) {
    ir::ValueId v = net.add_input(name, t.dtype, ir::Shape(t.dims.begin(), t.dims.end()));
    feeds[name] = std::move(t);
    return v;
  }
};

// Relative to each output's largest magnitude: the output's rounding and float32 sums.
inline double rounding_tolerance(DType dtype) {
  return dtype == DType::kFloat32 ? 2e-5 : dtype == DType::kFloat16 ? 4e-3 : 3e-2;
}

// A suite over (floating dtype, kernel specialization): expect_matches runs an
// OpNetwork built for them on the GPU against the reference.
class GpuDTypeAndStrategyTest : public ::testing::TestWithParam<std::tuple<DType, runtime::KernelSpecialization>> {
 protected:
  void expect_matches(OpNetwork& m, ir::OpKind op, const std::string& what, bool exact_integers = false) {
    auto [dtype, strategy] = GetParam();
    m.net.finalize();
    SCOPED_TRACE(str(what, " ", dtype_name(dtype), " ", spec_name(strategy)));
    expect_op_matches_reference(m.net, op, {m.feeds}, plan::Precision::kFloat32, strategy, rounding_tolerance(dtype), -1,
                                exact_integers);
  }
};

// "float16_generic": the name of a GpuDTypeAndStrategyTest case.
inline std::string dtype_and_strategy_name(const ::testing::TestParamInfo<GpuDTypeAndStrategyTest::ParamType>& info) {
  return str(dtype_name(std::get<0>(info.param)), "_", spec_name(std::get<1>(info.param)));
}

}  // namespace kiln::testing
