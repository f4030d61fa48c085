// Parameters that are tensor data (Trilu's k, Pad's constant_value, CumSum's
// axis, Resize's roi), seen without a GPU: warm_cache makes the ops as an
// engine does and prepares them for a shape, so the launches take those
// values from the device, and compiles their generic and specialized kernels.
// Resize's scales and Col2Im's shapes size their outputs: the GPU runtime
// runs such plans, which `kiln build` bounds.
#include <gtest/gtest.h>

#include "kiln/builder.h"
#include "kiln/error.h"
#include "kiln/reference.h"
#include "kiln/runtime.h"

namespace kiln::runtime {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;

ValueId ints(ir::Network& net, const std::string& name, const std::vector<int64_t>& v) {
  return net.add_weight(name, reference::make_tensor(DType::kInt64, {int64_t(v.size())}, {v.begin(), v.end()}));
}

// Kernels warm_cache compiles for `net` at the shapes of its inputs (all fixed).
int kernels_for(ir::Network& net) {
  net.finalize();
  InputShapes shapes;
  for (ValueId id : net.inputs()) shapes[net.value(id).name] = ir::shape_constants(net.value(id).shape);
  plan::Plan p = builder::build(net, {});
  for (const NodeSupport& s : gpu_support(p)) EXPECT_TRUE(s.supported) << s.node << ": " << s.reason;
  RuntimeCache cache(compiler_version());
  return warm_cache(p, 90, cache, {}, {shapes});
}

TEST(TensorParametersWarm, KernelsReadingTheirParametersPrepareAndCompile) {
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    SCOPED_TRACE(dtype_name(dtype));
    {
      ir::Network net;
      ValueId x = net.add_input("x", dtype, {Dim(7), Dim(33)});
      net.add_output(net.add_op1(OpKind::kTrilu, {x, net.add_input("k", DType::kInt64, {})}));
      EXPECT_EQ(kernels_for(net), 2);  // generic and specialized
    }
    {
      ir::Network net;
      ValueId x = net.add_input("x", dtype, {Dim(7), Dim(33)});
      net.add_output(net.add_op1(OpKind::kPad, {x, ints(net, "pads", {1, -2, 3, 4}), net.add_input("value", dtype, {})}));
      EXPECT_EQ(kernels_for(net), 2);
    }
    for (DType axis : {DType::kInt32, DType::kInt64}) {
      ir::Network net;
      ValueId x = net.add_input("x", dtype, {Dim(3), Dim(1025), Dim(2)});
      net.add_output(net.add_op1(OpKind::kCumSum, {x, net.add_input("axis", axis, {})}));
      EXPECT_EQ(kernels_for(net), 2);
    }
    {
      ir::Network net;
      ValueId x = net.add_input("x", dtype, {Dim(1), Dim(3), Dim(7), Dim(33)});
      ValueId scales = net.add_weight("scales", reference::make_tensor(DType::kFloat32, {4}, {1, 1, 2, 0.5}));
      ir::Attributes a;
      a.set("coordinate_transformation_mode", std::string("tf_crop_and_resize"));
      a.set("mode", std::string("linear"));
      net.add_output(net.add_op1(OpKind::kResize, {x, net.add_input("roi", DType::kFloat16, {Dim(8)}), scales}, a));
      EXPECT_EQ(kernels_for(net), 2);
    }
  }
}

// A roi of a length Resize does not take fails when the launch is prepared, naming the node and the tensor.
TEST(TensorParametersWarm, ARoiOfTheWrongLengthFailsNamingIt) {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(1), Dim(3), Dim(7), Dim(33)});
  ValueId scales = net.add_weight("scales", reference::make_tensor(DType::kFloat32, {4}, {1, 1, 2, 0.5}));
  ir::Attributes a;
  a.set("coordinate_transformation_mode", std::string("tf_crop_and_resize"));
  net.add_output(net.add_op1(OpKind::kResize, {x, net.add_input("roi", DType::kFloat32, {Dim(6)}), scales}, a, "resize"));
  try {
    kernels_for(net);
    ADD_FAILURE() << "a roi of 6 entries for 4 dims was prepared";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("node 'resize' (Resize): roi 'roi' has 6 entries; expected 8"), std::string::npos) << e.what();
  }
}

// Resize by scales and Col2Im by shapes from graph inputs: their outputs'
// sizes depend on data, which `kiln build` bounds, and the GPU runtime runs them.
TEST(TensorParametersWarm, SizesFromInputDataRunOnTheGpu) {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat16, {Dim(1), Dim(2), Dim(7), Dim(9)});
  ValueId resized = net.add_op1(OpKind::kResize, {x, ir::kNoValue, net.add_input("scales", DType::kFloat32, {Dim(4)})});
  ValueId columns = net.add_input("columns", DType::kFloat32, {Dim(1), Dim(12), Dim(68)});
  ValueId image = net.add_input("image", DType::kInt64, {Dim(2)});
  ValueId block = net.add_input("block", DType::kInt64, {Dim(2)});
  ValueId folded = net.add_op1(OpKind::kCol2Im, {columns, image, block});
  for (ValueId v : {resized, folded}) net.add_output(v);
  net.finalize();
  builder::BuildOptions options;
  EXPECT_THROW(builder::build(net, options), Error);  // no bound for the data-dependent sizes
  options.data_dependent_bounds = {{net.value(resized).name, 64}, {net.value(folded).name, 40}};
  plan::Plan p = builder::build(net, options);
  for (const NodeSupport& s : gpu_support(p)) EXPECT_TRUE(s.supported) << s.node << ": " << s.reason;
}

}  // namespace
}  // namespace kiln::runtime
