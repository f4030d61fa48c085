// The Triton backend's input names, request checks, batch grouping and
// concatenation, and the reference runner on a batch writing each request's
// rows to its own targets, without a server.
#include <gtest/gtest.h>

#include "../plan/small_plan.h"
#include "batching.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"
#include "runners.h"

using namespace kiln;
using namespace kiln::serving;

namespace {

// The small plan (x[n,8], n in 1..4) served with max_batch_size 4.
std::shared_ptr<const ServedModel> small_model(int64_t max_batch_size = 4) {
  auto served = std::make_shared<ServedModel>();
  served->plan = std::make_shared<const plan::Plan>(plan::testing::small_plan(4));
  served->config.max_batch_size = max_batch_size;
  return served;
}

ir::TensorData rows(int64_t n, int64_t width, double first) {
  std::vector<double> values;
  for (int64_t i = 0; i < n * width; ++i) values.push_back(first + 0.125 * double(i));
  return reference::make_tensor(DType::kFloat32, {n, width}, values);
}

// a[n,8] and b[n,2n], n in 1..4: a symbol shared by two inputs and a dim
// that is an expression of it.
std::shared_ptr<const ServedModel> two_input_model() {
  ir::Network net;
  net.add_input("a", DType::kFloat32, {ir::Dim::symbol("n"), ir::Dim(8)});
  net.add_input("b", DType::kFloat32, {ir::Dim::symbol("n"), ir::shape_numel({ir::Dim::symbol("n"), ir::Dim(2)})});
  net.set_dim_range("n", {1, 2, 4});
  plan::Plan plan;
  plan.network = std::move(net);
  auto served = std::make_shared<ServedModel>();
  served->plan = std::make_shared<const plan::Plan>(std::move(plan));
  served->config.max_batch_size = 4;
  return served;
}

// The nonzero-rows plan served unbatched.
std::shared_ptr<const ServedModel> nonzero_model() {
  auto served = std::make_shared<ServedModel>();
  served->plan = std::make_shared<const plan::Plan>(plan::testing::nonzero_rows_plan());
  served->config.max_batch_size = 0;
  return served;
}

// Runs `x` on `runner` into a host target sized by the dims the run reports;
// returns those dims and the positions written.
std::pair<std::vector<int64_t>, std::vector<int64_t>> run_nonzero(Runner& runner, const ir::TensorData& x) {
  std::vector<int64_t> dims, positions;
  runner.run({{{&x, -1}}}, [&](const std::vector<std::vector<int64_t>>& d, std::vector<std::vector<OutputTarget>>& targets) {
    dims = d.at(0);
    positions.assign(size_t(ir::checked_numel(dims)), -1);
    targets.at(0).at(0) = {positions.data(), 0, positions.size() * sizeof(int64_t), -1};
  });
  return {dims, positions};
}

// Runs a batch on `runner` with host targets: each request's rows of output 0
// into a vector of its own, offsets and sizes as the backend computes them.
std::vector<std::vector<float>> run_into_targets(Runner& runner, const std::vector<const ir::TensorData*>& requests) {
  StackedInput parts;
  for (const ir::TensorData* t : requests) parts.push_back({t, -1});
  std::vector<std::vector<float>> out(requests.size());
  runner.run({parts}, [&](const std::vector<std::vector<int64_t>>& dims, std::vector<std::vector<OutputTarget>>& targets) {
    EXPECT_EQ(targets.size(), requests.size());
    size_t row_bytes = size_t(ir::checked_numel(dims[0]) / dims[0][0]) * sizeof(float), offset = 0;
    for (size_t k = 0; k < requests.size(); ++k) {
      out[k].assign(size_t(requests[k]->dims[0]) * row_bytes / sizeof(float), -1.0f);
      targets[k][0] = {out[k].data(), offset, out[k].size() * sizeof(float), -1};
      offset += targets[k][0].bytes;
    }
  });
  return out;
}

}  // namespace

TEST(TritonBatching, ResolvesInputNamesAndSaysWhichIsWrong) {
  auto model = two_input_model();
  IoNames names(model->plan->network);
  ASSERT_EQ(names.input_count(), 2u);
  std::vector<uint32_t> order;
  std::vector<const char*> reversed{"b", "a"};
  EXPECT_EQ(names.order_inputs(reversed, order), "");
  EXPECT_EQ(order, (std::vector<uint32_t>{1, 0}));
  std::vector<const char*> misnamed{"a", "c"}, missing{"b"}, twice{"a", "a"};
  EXPECT_EQ(names.order_inputs(misnamed, order), "the request has an input 'c' the model does not take (it takes 'a', 'b')");
  EXPECT_EQ(names.order_inputs(missing, order), "input 'a' is missing");
  EXPECT_EQ(names.order_inputs(twice, order), "the request has input 'a' twice");
  auto small = small_model();
  IoNames outputs(small->plan->network);
  EXPECT_EQ(outputs.output(small->plan->network.value(small->plan->network.outputs()[0]).name), 0);
  EXPECT_EQ(outputs.output("x"), -1);
}

TEST(TritonBatching, ChecksEachRequestOnItsOwn) {
  auto model = small_model();
  RequestCheck check(model);
  EXPECT_EQ(check({rows(2, 8, 0)}), "");
  EXPECT_EQ(check({rows(2, 7, 0)}), "input 'x' dim 1 is 7; the model needs 8");
  EXPECT_EQ(check({rows(5, 8, 0)}), "input 'x' dim 0 is 5; the model's profile allows 1..4 for 'n'");
  EXPECT_EQ(check({}), "the request has 0 inputs; the model takes 1");
  ir::TensorData ints = reference::make_tensor(DType::kInt32, {2, 8}, std::vector<double>(16, 1));
  EXPECT_EQ(check({ints}), "input 'x' is int32; the model takes float32");
  EXPECT_EQ(check({rows(3, 8, 0)}), "");  // nothing of the failed checks stays bound
  RequestCheck two(small_model(2));
  EXPECT_EQ(two({rows(3, 8, 0)}), "the batch dim is 3; max_batch_size is 2");
}

TEST(TritonBatching, ChecksSymbolsSharedBetweenInputsAndExpressions) {
  auto model = two_input_model();
  RequestCheck check(model);
  EXPECT_EQ(check({rows(2, 8, 0), rows(2, 4, 0)}), "");
  EXPECT_EQ(check({rows(3, 8, 0), rows(2, 4, 0)}), "input 'b' dim 0 is 2 but input 'a' dim 0 is 3 (both are 'n')");
  EXPECT_EQ(check({rows(3, 8, 0), rows(3, 4, 0)}), "input 'b' dim 1 is 4; with the other dims the model needs 6 (2*n)");
  EXPECT_EQ(check({rows(3, 8, 0), rows(3, 6, 0)}), "");
}

TEST(TritonBatching, GroupsRequestsWhoseTrailingDimsAgree) {
  auto model = small_model();
  RequestInputs a{rows(1, 8, 0)}, b{rows(2, 8, 0)}, c{rows(1, 4, 0)}, d{rows(1, 8, 0)};
  std::vector<std::vector<size_t>> expected{{0, 1, 3}, {2}};
  EXPECT_EQ(batch_groups(*model, {&a, &b, &c, &d}), expected);
  std::vector<std::vector<size_t>> alone{{0}, {1}, {2}};
  EXPECT_EQ(batch_groups(*small_model(0), {&a, &b, &d}), alone);
}

TEST(TritonBatching, ConcatenatesRows) {
  ir::TensorData a = rows(1, 3, 0), b = rows(2, 3, 10);
  ir::TensorData joined = concat_batch({&a, &b});
  EXPECT_EQ(joined.dims, (std::vector<int64_t>{3, 3}));
  std::vector<double> expected = ir::read_doubles(a), tail = ir::read_doubles(b);
  expected.insert(expected.end(), tail.begin(), tail.end());
  EXPECT_EQ(ir::read_doubles(joined), expected);
  ir::TensorData ints = reference::make_tensor(DType::kInt32, {1, 3}, {1, 2, 3});
  EXPECT_THROW(concat_batch({&a, &ints}), Error);
}

TEST(TritonBatching, ABatchOnTheReferenceRunnerWritesEachRequestsRowsToItsTargets) {
  auto model = small_model();
  auto runner = make_reference_runner(model);
  EXPECT_EQ(runner->gpu(), -1);
  ir::TensorData a = rows(1, 8, -1), b = rows(3, 8, 0.5);
  std::vector<std::vector<float>> batch = run_into_targets(*runner, {&a, &b});
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0].size(), 8u);
  EXPECT_EQ(batch[1].size(), 24u);
  EXPECT_EQ(batch[0], run_into_targets(*runner, {&a})[0]);
  EXPECT_EQ(batch[1], run_into_targets(*runner, {&b})[0]);
  for (size_t r = 0; r < 3; ++r) {  // softmax rows, not the -1 the targets started with
    float sum = 0;
    for (size_t c = 0; c < 8; ++c) sum += batch[1][r * 8 + c];
    EXPECT_NEAR(sum, 1.0f, 1e-5f) << "row " << r;
  }
  ir::TensorData c = rows(1, 8, 2);
  EXPECT_NE(run_into_targets(*runner, {&c})[0], batch[0]);  // the check can tell rows apart
}

TEST(TritonBatching, TheReferenceRunnerRefusesInputsInGpuMemory) {
  auto model = small_model();
  auto runner = make_reference_runner(model);
  ir::TensorData a = rows(1, 8, 0);
  bool asked = false;
  try {
    runner->run({{{&a, 0}}}, [&](const auto&, auto&) { asked = true; });
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_NE(std::string(e.what()).find("input 'x' in GPU memory"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(asked);
}

TEST(TritonBatching, TheReferenceRunnerSkipsOutputsNobodyAskedFor) {
  auto model = small_model();
  auto runner = make_reference_runner(model);
  ir::TensorData a = rows(2, 8, 0);
  std::vector<std::vector<int64_t>> seen;
  runner->run({{{&a, -1}}}, [&](const std::vector<std::vector<int64_t>>& dims, auto& targets) {
    seen = dims;
    ASSERT_EQ(targets.size(), 1u);
    ASSERT_EQ(targets[0].size(), 1u);
    EXPECT_EQ(targets[0][0].data, nullptr);  // left unset: written nowhere
  });
  EXPECT_EQ(seen, (std::vector<std::vector<int64_t>>{{2, 8}}));
}

// Sizes found by the run itself, on one runner whose counts grow and shrink
// between runs.
void expect_nonzero_rows(Runner& runner) {
  for (const std::vector<double>& values :
       {std::vector<double>{0, 2, 0, -1, 3}, std::vector<double>(16, 1.5), std::vector<double>{0, 0}, {0, 0, 0, 7}}) {
    ir::TensorData x = reference::make_tensor(DType::kFloat32, {int64_t(values.size())}, values);
    std::vector<int64_t> want;
    for (size_t i = 0; i < values.size(); ++i)
      if (values[i] != 0) want.push_back(int64_t(i));
    auto [dims, positions] = run_nonzero(runner, x);
    EXPECT_EQ(dims, (std::vector<int64_t>{int64_t(want.size()), 1}));
    EXPECT_EQ(positions, want);
  }
}

TEST(TritonBatching, TheReferenceRunnerSizesDataDependentOutputsByTheRun) {
  expect_nonzero_rows(*make_reference_runner(nonzero_model()));
}

// The GPU runner binds such outputs to its buffers, sized at the plan's bound,
// and asks for their targets once enqueue has read the count back.
TEST(TritonBatching, TheGpuRunnerSizesDataDependentOutputsByTheRun) {
  if (!runtime::cuda_available()) GTEST_SKIP() << "needs a GPU";
  auto model = nonzero_model();
  expect_nonzero_rows(*make_gpu_runner(runtime::Engine::create(*model->plan), 0));
}
