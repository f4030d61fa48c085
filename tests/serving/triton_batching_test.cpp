// The Triton backend's request checks, batch grouping, concatenation and
// slicing, and the reference runner on a batch, without a server.
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

}  // namespace

TEST(TritonBatching, ChecksEachRequestOnItsOwn) {
  auto model = small_model();
  EXPECT_EQ(check_request(*model, {rows(2, 8, 0)}), "");
  EXPECT_EQ(check_request(*model, {rows(2, 7, 0)}), "input 'x' dim 1 is 7; the model needs 8");
  EXPECT_EQ(check_request(*model, {rows(5, 8, 0)}), "input 'x' dim 0 is 5; the model's profile allows 1..4 for 'n'");
  EXPECT_EQ(check_request(*model, {}), "the request has 0 inputs; the model takes 1");
  ir::TensorData ints = reference::make_tensor(DType::kInt32, {2, 8}, std::vector<double>(16, 1));
  EXPECT_EQ(check_request(*model, {ints}), "input 'x' is int32; the model takes float32");
  EXPECT_EQ(check_request(*small_model(2), {rows(3, 8, 0)}), "the batch dim is 3; max_batch_size is 2");
}

TEST(TritonBatching, GroupsRequestsWhoseTrailingDimsAgree) {
  auto model = small_model();
  RequestInputs a{rows(1, 8, 0)}, b{rows(2, 8, 0)}, c{rows(1, 4, 0)}, d{rows(1, 8, 0)};
  std::vector<std::vector<size_t>> expected{{0, 1, 3}, {2}};
  EXPECT_EQ(batch_groups(*model, {&a, &b, &c, &d}), expected);
  std::vector<std::vector<size_t>> alone{{0}, {1}, {2}};
  EXPECT_EQ(batch_groups(*small_model(0), {&a, &b, &d}), alone);
}

TEST(TritonBatching, ConcatenatesAndSlicesRows) {
  ir::TensorData a = rows(1, 3, 0), b = rows(2, 3, 10);
  ir::TensorData joined = concat_batch({&a, &b});
  EXPECT_EQ(joined.dims, (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(ir::read_doubles(slice_batch(joined, 0, 1)), ir::read_doubles(a));
  EXPECT_EQ(ir::read_doubles(slice_batch(joined, 1, 2)), ir::read_doubles(b));
  EXPECT_THROW(slice_batch(joined, 2, 2), Error);
}

TEST(TritonBatching, ABatchOnTheReferenceRunnerEqualsEachRequestAlone) {
  auto model = small_model();
  auto runner = make_reference_runner(model);
  ir::TensorData a = rows(1, 8, -1), b = rows(3, 8, 0.5);
  std::vector<ir::TensorData> batch = runner->run({{&a, &b}});
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(ir::read_doubles(slice_batch(batch[0], 0, 1)), ir::read_doubles(runner->run({{&a}})[0]));
  EXPECT_EQ(ir::read_doubles(slice_batch(batch[0], 1, 3)), ir::read_doubles(runner->run({{&b}})[0]));
}
