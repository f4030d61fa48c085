// The closed set of operations a Network may hold. Semantics follow the newest
// ONNX definition of each op; front ends translate older forms into these.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "kiln/export.h"

KILN_API_BEGIN
namespace kiln::ir {

// Ops of a model, as front ends make them (ONNX semantics).
#define KILN_MODEL_OPS(X)                                                                              \
  /* elementwise unary */                                                                              \
  X(Abs) X(Neg) X(Sqrt) X(Reciprocal) X(Exp) X(Log) X(Floor) X(Ceil) X(Round) X(Sign) X(Relu)           \
  X(Sigmoid) X(Tanh) X(Erf) X(Softplus) X(Softsign) X(Sin) X(Cos) X(Tan) X(Asin) X(Acos) X(Atan)       \
  X(Sinh) X(Cosh) X(Asinh) X(Acosh) X(Atanh) X(LeakyRelu) X(Elu) X(Selu) X(Celu) X(HardSigmoid)        \
  X(HardSwish) X(Gelu) X(ThresholdedRelu) X(Shrink) X(Clip) X(Not) X(IsNaN) X(IsInf) X(Cast)           \
  X(CastLike) X(Identity) X(Dropout)                                                                   \
  /* elementwise binary and variadic, numpy broadcasting */                                            \
  X(Add) X(Sub) X(Mul) X(Div) X(Pow) X(Mod) X(PRelu) X(Equal) X(Less) X(LessOrEqual) X(Greater)       \
  X(GreaterOrEqual) X(And) X(Or) X(Xor) X(Min) X(Max) X(Mean) X(Sum) X(Where)                         \
  /* linear algebra and neural network layers */                                                       \
  X(MatMul) X(Gemm) X(Einsum) X(Conv) X(ConvTranspose) X(BatchNormalization) X(InstanceNormalization) \
  X(LayerNormalization) X(GroupNormalization) X(MaxPool) X(AveragePool) X(GlobalAveragePool)           \
  X(GlobalMaxPool) X(Softmax) X(LogSoftmax) X(Hardmax)                                                 \
  /* reductions */                                                                                     \
  X(ReduceMean) X(ReduceSum) X(ReduceMax) X(ReduceMin) X(ReduceProd) X(ReduceL1) X(ReduceL2)           \
  X(ReduceLogSum) X(ReduceLogSumExp) X(ReduceSumSquare) X(ArgMax) X(ArgMin) X(CumSum) X(TopK)          \
  /* shape and data movement */                                                                        \
  X(Reshape) X(Flatten) X(Squeeze) X(Unsqueeze) X(Transpose) X(Concat) X(Split) X(Slice) X(Gather)     \
  X(GatherElements) X(Expand) X(Tile) X(Pad) X(Shape) X(Size) X(ConstantOfShape) X(Range) X(Trilu)     \
  X(Resize) X(DepthToSpace) X(SpaceToDepth) X(OneHot)

// Ops made by the builder's passes, never by front ends.
#define KILN_BUILDER_OPS(X) X(FusedMatMul) X(FusedElementwise) X(ConvChannelsLast) X(MaxPoolChannelsLast) X(Attention)

// Plans store ops by name (op_name), so the order here is free to change.
#define KILN_OPS(X) KILN_MODEL_OPS(X) KILN_BUILDER_OPS(X)

enum class OpKind : uint16_t {
#define KILN_OP_ENUM(name) k##name,
  KILN_OPS(KILN_OP_ENUM)
#undef KILN_OP_ENUM
};

std::string_view op_name(OpKind op);
std::optional<OpKind> op_from_name(std::string_view name);
int op_count();
// Made by the builder only (KILN_BUILDER_OPS): front ends and users may not use it.
bool is_builder_op(OpKind op);

}  // namespace kiln::ir
KILN_API_END
