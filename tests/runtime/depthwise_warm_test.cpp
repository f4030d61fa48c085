// Which Convs the tiled depthwise kernel takes, seen without a GPU: warm_cache
// makes the ops as an engine does, prepares them for a shape and compiles the
// kernels they launch, generic and specialized for that shape. cuDNN's Convs
// compile nothing, so the count of kernels tells the paths apart.
#include <gtest/gtest.h>

#include "kiln/builder.h"
#include "kiln/error.h"
#include "kiln/reference.h"
#include "kiln/runtime.h"

namespace kiln::runtime {
namespace {

using ir::Dim;
using ir::OpKind;
using Ints = std::vector<int64_t>;

struct Conv {
  Ints x, w, strides, pads, dilations;
  int64_t group;
};

// Kernels warm_cache compiles for a network of one Conv (with bias) at its input's shape.
int kernels_for(const Conv& c, DType dtype) {
  ir::Network net;
  auto x = net.add_input("x", dtype, {Dim(c.x[0]), Dim(c.x[1]), Dim(c.x[2]), Dim(c.x[3])});
  auto weight = [&](const std::string& name, const Ints& dims) {
    return net.add_weight(name, reference::make_tensor(dtype, dims, std::vector<double>(size_t(ir::checked_numel(dims)), 0.5)));
  };
  ir::Attributes a;
  a.set("group", c.group);
  a.set("strides", c.strides);
  a.set("pads", c.pads);
  a.set("dilations", c.dilations);
  net.add_output(net.add_op1(OpKind::kConv, {x, weight("w", c.w), weight("b", {c.w[0]})}, a, "conv"));
  net.finalize();
  plan::Plan p = builder::build(net, {}, "conv");
  RuntimeCache cache(compiler_version());
  return warm_cache(p, 90, cache, {}, {{{"x", c.x}}});
}

TEST(DepthwiseWarm, DepthwiseConvsCompileTheTiledKernelAndTheRestCompileNothing) {
  // Depthwise with symmetric pads, which cuDNN ran before: a generic and a specialized kernel.
  Conv convnext{{2, 96, 56, 56}, {96, 1, 7, 7}, {1, 1}, {3, 3, 3, 3}, {1, 1}, 96};
  Conv mobilenet{{2, 16, 28, 28}, {32, 1, 3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}, 16};  // multiplier 2
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64}) {
    SCOPED_TRACE(dtype_name(dtype));
    EXPECT_EQ(kernels_for(convnext, dtype), 2);
    EXPECT_EQ(kernels_for(mobilenet, dtype), 2);
  }
  // 15x15 dilated 4: a tile of floats fits (fewer rows a thread); none of doubles does, so cuDNN runs it.
  Conv wide{{1, 2, 70, 70}, {2, 1, 15, 15}, {1, 1}, {28, 28, 28, 28}, {4, 4}, 2};
  EXPECT_EQ(kernels_for(wide, DType::kFloat32), 2);
  EXPECT_EQ(kernels_for(wide, DType::kFloat64), 0);
  // Not depthwise (2 groups of 4 channels), and a window no tile fits: cuDNN.
  EXPECT_EQ(kernels_for({{2, 8, 10, 10}, {8, 4, 3, 3}, {1, 1}, {1, 1, 1, 1}, {1, 1}, 2}, DType::kFloat32), 0);
  EXPECT_EQ(kernels_for({{1, 2, 100, 100}, {2, 1, 25, 25}, {1, 1}, {48, 48, 48, 48}, {4, 4}, 2}, DType::kFloat32), 0);
}

}  // namespace
}  // namespace kiln::runtime
