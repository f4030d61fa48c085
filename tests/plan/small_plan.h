// A small plan for the plan-format tests: x[n,8] -> MatMul -> Add -> Relu ->
// Mul -> Softmax, with arena values at every step.
#pragma once

#include <string>
#include <vector>

#include "kiln/builder.h"
#include "kiln/plan.h"
#include "kiln/reference.h"

namespace kiln::plan::testing {

inline Plan small_plan(int64_t max_n) {
  using ir::Dim;
  using ir::OpKind;
  ir::Network net;
  auto x = net.add_input("x", DType::kFloat32, {Dim::symbol("n"), Dim(8)});
  auto w = net.add_weight("w", reference::make_tensor(DType::kFloat32, {8, 8}, std::vector<double>(64, 0.25)));
  auto b = net.add_weight("b", reference::make_tensor(DType::kFloat32, {8}, {1, 2, 3, 4, 5, 6, 7, 8}));
  auto h = net.add_op1(OpKind::kRelu, {net.add_op1(OpKind::kAdd, {net.add_op1(OpKind::kMatMul, {x, w}), b})});
  auto y = net.add_op1(OpKind::kSoftmax, {net.add_op1(OpKind::kMul, {h, h})});
  net.add_output(y);
  net.set_dim_range("n", {1, 2, max_n});
  net.finalize();
  return builder::build(net, {}, "small");
}

inline Buffer bytes_of(const std::string& s) { return Buffer::copy_of(s.data(), s.size()); }

}  // namespace kiln::plan::testing
