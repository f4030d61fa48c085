// A small plan for the plan-format tests: x[n,8] -> MatMul -> Add -> Relu ->
// Mul -> Softmax, with arena values at every step.
#pragma once

#include <string>
#include <vector>

#include "kiln/builder.h"
#include "kiln/plan.h"
#include "kiln/reference.h"

namespace kiln::plan::testing {

inline ir::Network small_network(int64_t max_n) {
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
  return net;
}

inline Plan small_plan(int64_t max_n) { return builder::build(small_network(max_n), {}, "small"); }

// The same network with two optimization profiles: n in 1..4 (opt 2) and 5..max_n (opt 8).
inline Plan two_profile_plan(int64_t max_n) {
  ir::Network net = small_network(max_n);
  builder::BuildOptions options;
  builder::add_input_profile(net, "x", {1, 8}, {2, 8}, {4, 8}, options, 0);
  builder::add_input_profile(net, "x", {5, 8}, {8, 8}, {max_n, 8}, options, 1);
  return builder::build(net, options, "two profiles");
}

// x[n] (n in 1..16) -> the positions of its nonzeros as rows, [count, 1]: an
// output whose size depends on the data (its first dim too).
inline Plan nonzero_rows_plan() {
  ir::Network net;
  ir::ValueId x = net.add_input("x", DType::kFloat32, {ir::Dim::symbol("n")});
  ir::ValueId nz = net.add_op1(ir::OpKind::kNonZero, {x}, {}, "nz");
  ir::Attributes perm;
  perm.set("perm", std::vector<int64_t>{1, 0});
  net.add_output(net.add_op1(ir::OpKind::kTranspose, {nz}, perm, "rows"));
  net.set_dim_range("n", {1, 8, 16});
  net.finalize();
  return builder::build(net, {}, "nonzero rows");
}

inline Buffer bytes_of(const std::string& s) { return Buffer::copy_of(s.data(), s.size()); }

}  // namespace kiln::plan::testing
