// Helpers for GPU tests: skip cleanly without a GPU, random networks' inputs,
// and comparison of GPU results with the reference interpreter.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kiln/builder.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"
#include "kiln/runtime.h"

namespace kiln::testing {

#define KILN_REQUIRE_GPU()                                   \
  do {                                                       \
    std::string kiln_why_;                                   \
    if (!::kiln::runtime::cuda_available(&kiln_why_)) GTEST_SKIP() << kiln_why_; \
  } while (0)

inline ir::TensorData random_tensor(DType dtype, const std::vector<int64_t>& dims, std::mt19937& rng, double lo = 0.1,
                                    double hi = 1.0) {
  std::uniform_real_distribution<double> mag(lo, hi);
  std::vector<double> v(size_t(ir::checked_numel(dims)));
  for (auto& x : v) x = mag(rng) * (rng() % 2 ? 1 : -1);
  return reference::make_tensor(dtype, dims, v);
}

// Builds `net` at `precision` for exactly the shapes of `inputs`, runs it on the
// GPU and checks every output against the reference run of `net` within
// tolerance relative to the largest reference magnitude of that output.
inline void expect_gpu_matches_reference(const ir::Network& net, const std::map<std::string, ir::TensorData>& inputs,
                                         plan::Precision precision, double tolerance, const std::string& label,
                                         runtime::KernelSpecialization strategy = runtime::KernelSpecialization::kNone) {
  SCOPED_TRACE(label);
  builder::BuildOptions options;
  options.precision = precision;
  for (ir::ValueId id : net.inputs()) {
    const auto& dims = inputs.at(net.value(id).name).dims;
    builder::add_input_profile(net, net.value(id).name, dims, dims, dims, options);
  }
  runtime::RuntimeConfig config;
  config.dynamic_shapes_kernel_specialization_strategy = strategy;
  auto engine = runtime::Engine::create(builder::build(net, options), config);
  auto context = engine->create_context();
  auto got = runtime::run_with_host_tensors(*context, *engine, inputs);
  auto want = reference::run(net, inputs);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].dims, want[i].dims) << "output " << i;
    auto a = ir::read_doubles(got[i]), b = ir::read_doubles(want[i]);
    double scale = 0;
    for (double x : b) scale = std::max(scale, std::fabs(x));
    for (size_t k = 0; k < a.size(); ++k) {
      ASSERT_FALSE(std::isnan(a[k]) && !std::isnan(b[k])) << "output " << i << " element " << k << " is NaN";
      ASSERT_NEAR(a[k], b[k], tolerance * std::max(scale, 1e-3)) << "output " << i << " element " << k;
    }
  }
}

}  // namespace kiln::testing
