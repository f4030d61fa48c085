// Wide half-precision products whose N is off the 8-element grid (LM heads):
// the runtime computes Y^T into the builder's scratch and transposes it where
// Y's row count is on the grid, and takes the direct product elsewhere; both
// against the reference interpreter, generic and shape-specialized kernels,
// and on caller buffers the transpose's vectors cannot use.
#include "gpu_test_util.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;
using P = plan::Precision;
using S = runtime::KernelSpecialization;

// logits[batch, seq, n] = x[batch, seq, 64] @ w[64, n]: an LM head over an odd vocabulary.
// In the product's own dtype, so the transpose writes the caller's buffer.
ir::Network lm_head(DType dtype, int64_t n, std::mt19937& rng) {
  ir::Network net;
  ValueId x = net.add_input("x", dtype, {Dim::symbol("batch"), Dim::symbol("seq"), Dim(64)});
  net.add_output(net.add_op1(OpKind::kMatMul, {x, net.add_weight("w", random_tensor(dtype, {64, n}, rng, 0.1, 0.5))}));
  net.finalize();
  return net;
}

bool has_scratch(const runtime::Engine& engine) {
  for (const ir::Node& node : engine.plan().network.nodes())
    if (node.op == OpKind::kFusedMatMul && node.outputs.size() == 2) return true;
  return false;
}

TEST(GpuTransposedProducts, MatchTheReferenceOnAndOffTheGrid) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(11);
  for (P precision : {P::kFloat16, P::kBFloat16})
    for (S strategy : {S::kNone, S::kEager})
      for (auto [batch, seq] : {std::pair<int64_t, int64_t>{2, 4}, {1, 7}, {3, 8}, {1, 1}}) {
        DType dtype = precision == P::kFloat16 ? DType::kFloat16 : DType::kBFloat16;
        ir::Network net = lm_head(dtype, 4101, rng);
        std::map<std::string, ir::TensorData> inputs{{"x", random_tensor(dtype, {batch, seq, 64}, rng)}};
        SCOPED_TRACE(str(precision == P::kFloat16 ? "fp16" : "bf16", " ", spec_name(strategy), " rows ", batch * seq));
        auto engine = engine_for(net, inputs, precision, strategy);
        ASSERT_TRUE(has_scratch(*engine));
        auto context = engine->create_context();
        auto want = reference::run(net, inputs);
        double tolerance = precision == P::kFloat16 ? 1e-2 : 4e-2;
        expect_outputs_close(runtime::run_with_host_tensors(*context, *engine, inputs), want, tolerance);
        expect_outputs_close(run_on_shifted_buffers(*context, net, inputs, 1, 1), want, tolerance);
      }
}

}  // namespace
}  // namespace kiln::testing
