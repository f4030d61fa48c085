// Type and shape inference for every op. Works on symbolic Dims; with concrete
// dims and real data (the reference interpreter) it yields concrete shapes.
// Each op family's rules are in src/ir/ops/<family>.cpp.
#include "kiln/ir/shape_inference.h"

#include "ops/family.h"

namespace kiln::ir {

namespace {

void infer_any(Ctx& c) {
  switch (family_of(c.node().op)) {
    case OpFamily::kElementwise: return infer_elementwise(c);
    case OpFamily::kLinalg: return infer_linalg(c);
    case OpFamily::kConv: return infer_conv(c);
    case OpFamily::kPool: return infer_pool(c);
    case OpFamily::kNormalization: return infer_normalization(c);
    case OpFamily::kReduce: return infer_reduce(c);
    case OpFamily::kMovement: return infer_movement(c);
    case OpFamily::kGenerator: return infer_generator(c);
    case OpFamily::kVision: return infer_vision(c);
    case OpFamily::kRecurrent: return infer_recurrent(c);
    case OpFamily::kControlFlow: return infer_control_flow(c);
  }
  no_inference(c);
}

}  // namespace

std::vector<InferOutput> infer_node(const Node& node, const std::vector<InferInput>& inputs,
                                    const std::function<Dim()>& fresh_dim) {
  Ctx c(node, inputs, fresh_dim);
  try {
    infer_any(c);
    if (!c.inferred()) no_inference(c);
  } catch (const Error& e) {  // dim arithmetic and size checks do not know the node; name it
    std::string_view what = e.what();
    if (what.rfind("node '", 0) == 0) throw;
    c.error(e.code(), what);
  }
  return c.take();
}

}  // namespace kiln::ir
