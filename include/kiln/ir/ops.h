// The closed set of operations a Network may hold. Semantics follow the newest
// ONNX definition of each op; front ends translate older forms into these.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "kiln/export.h"

KILN_API_BEGIN
namespace kiln::ir {

// The ops by family. A family is the unit of code: every layer has one file
// per family (ir/ops/, reference/, runtime/ops/ beside runtime/codegen/; see
// docs/ops.md). Each family list takes two macros: M for ops of a model, as
// front ends make them (ONNX semantics), B for ops made by the builder's
// passes only, never by front ends.
#define KILN_ELEMENTWISE_OPS(M, B)                                                                      \
  /* unary */                                                                                          \
  M(Abs) M(Neg) M(Sqrt) M(Reciprocal) M(Exp) M(Log) M(Floor) M(Ceil) M(Round) M(Sign) M(Relu)           \
  M(Sigmoid) M(Tanh) M(Erf) M(Softplus) M(Softsign) M(Sin) M(Cos) M(Tan) M(Asin) M(Acos) M(Atan)       \
  M(Sinh) M(Cosh) M(Asinh) M(Acosh) M(Atanh) M(LeakyRelu) M(Elu) M(Selu) M(Celu) M(HardSigmoid)        \
  M(HardSwish) M(Gelu) M(ThresholdedRelu) M(Shrink) M(Clip) M(Not) M(IsNaN) M(IsInf) M(Cast)           \
  M(CastLike) M(Identity) M(Dropout)                                                                   \
  /* binary and variadic, numpy broadcasting */                                                        \
  M(Add) M(Sub) M(Mul) M(Div) M(Pow) M(Mod) M(PRelu) M(Equal) M(Less) M(LessOrEqual) M(Greater)       \
  M(GreaterOrEqual) M(And) M(Or) M(Xor) M(Min) M(Max) M(Mean) M(Sum) M(Where)                         \
  /* integer bit operations */                                                                         \
  M(BitShift) M(BitwiseAnd) M(BitwiseOr) M(BitwiseXor) M(BitwiseNot)                                   \
  /* linear quantization, per tensor or per axis */                                                   \
  M(QuantizeLinear) M(DequantizeLinear)                                                                \
  B(FusedElementwise)
#define KILN_LINALG_OPS(M, B) \
  M(MatMul) M(Gemm) M(Einsum) M(MatMulInteger) M(QLinearMatMul) M(Det) M(LinearAttention) B(FusedMatMul)    \
  B(Attention) M(DFT) M(STFT)
#define KILN_CONV_OPS(M, B) M(Conv) M(ConvTranspose) M(ConvInteger) M(QLinearConv) M(CausalConvWithState)   \
  M(DeformConv) B(ConvChannelsLast)
#define KILN_POOL_OPS(M, B)                                                                           \
  M(MaxPool) M(AveragePool) M(GlobalAveragePool) M(GlobalMaxPool) M(LpPool) M(GlobalLpPool) M(MaxUnpool) \
  B(MaxPoolChannelsLast)
// Normalizations over an axis or a group of axes, the softmax family among them.
#define KILN_NORMALIZATION_OPS(M, B)                                                                   \
  M(BatchNormalization) M(InstanceNormalization) M(LayerNormalization) M(GroupNormalization)          \
  M(LRN) M(LpNormalization)                                                                            \
  M(Softmax) M(LogSoftmax) M(Hardmax)
#define KILN_REDUCE_OPS(M, B)                                                                          \
  M(ReduceMean) M(ReduceSum) M(ReduceMax) M(ReduceMin) M(ReduceProd) M(ReduceL1) M(ReduceL2)           \
  M(ReduceLogSum) M(ReduceLogSumExp) M(ReduceSumSquare) M(ArgMax) M(ArgMin) M(CumSum) M(CumProd) M(TopK)
// Shape changes and data movement: outputs hold input elements (or a pad
// value), or their indices (NonZero, Unique).
#define KILN_MOVEMENT_OPS(M, B)                                                                        \
  M(Reshape) M(Flatten) M(Squeeze) M(Unsqueeze) M(Transpose) M(Concat) M(Split) M(Slice) M(Gather)     \
  M(GatherElements) M(Expand) M(Tile) M(Pad) M(Trilu) M(Resize) M(DepthToSpace) M(SpaceToDepth)       \
  M(GatherND) M(ScatterND) M(ScatterElements) M(NonZero) M(ReverseSequence) M(Compress) M(Unique)     \
  M(TensorScatter) M(BitCast)
// Outputs made from shapes and scalar inputs rather than from input elements,
// and the random ops (Philox-4x32-10 keyed by the seed: kiln/ir/random.h).
#define KILN_GENERATOR_OPS(M, B)                                                                       \
  M(Shape) M(Size) M(ConstantOfShape) M(Range) M(OneHot) M(EyeLike) M(HannWindow) M(HammingWindow)    \
  M(BlackmanWindow) M(MelWeightMatrix) M(RandomUniform) M(RandomNormal) M(RandomUniformLike)          \
  M(RandomNormalLike) M(Bernoulli) M(Multinomial)
// Vision: sampling at computed coordinates (grids, regions of interest), Col2Im,
// the sum of sliding blocks back into an image, detection's box selection, and
// ImageDecoder, which decodes an encoded image (JPEG, PNG, ...) on the host.
#define KILN_VISION_OPS(M, B) \
  M(GridSample) M(RoiAlign) M(AffineGrid) M(Col2Im) M(MaxRoiPool) M(NonMaxSuppression) M(ImageDecoder)
// Recurrent layers: a state carried from time step to time step.
#define KILN_RECURRENT_OPS(M, B) M(RNN) M(GRU) M(LSTM)
// Control flow: nodes that run subgraphs (graph attributes) once, by choice or repeatedly.
#define KILN_CONTROL_FLOW_OPS(M, B) M(If) M(Loop) M(Scan)
// Text: ops on string tensors, and TfIdfVectorizer's n-gram counts over strings or integers.
#define KILN_TEXT_OPS(M, B) M(StringConcat) M(StringSplit) M(StringNormalizer) M(RegexFullMatch) M(TfIdfVectorizer)
// Classical machine learning: the ai.onnx.ml domain's ops.
#define KILN_ML_OPS(M, B) M(LabelEncoder) M(Binarizer) M(ArrayFeatureExtractor) M(TreeEnsemble)

// Every op kind, X(Name), family by family. The order of families and of ops
// is free to change: plans store ops by name (op_name).
#define KILN_OPS(X)                                                                                    \
  KILN_ELEMENTWISE_OPS(X, X) KILN_LINALG_OPS(X, X) KILN_CONV_OPS(X, X) KILN_POOL_OPS(X, X)             \
  KILN_NORMALIZATION_OPS(X, X) KILN_REDUCE_OPS(X, X) KILN_MOVEMENT_OPS(X, X) KILN_GENERATOR_OPS(X, X)      \
  KILN_VISION_OPS(X, X) KILN_RECURRENT_OPS(X, X) KILN_CONTROL_FLOW_OPS(X, X) KILN_TEXT_OPS(X, X) KILN_ML_OPS(X, X)
#define KILN_NO_OP_(name)
// The builder's ops alone.
#define KILN_BUILDER_OPS(X)                                                                            \
  KILN_ELEMENTWISE_OPS(KILN_NO_OP_, X) KILN_LINALG_OPS(KILN_NO_OP_, X) KILN_CONV_OPS(KILN_NO_OP_, X)    \
  KILN_POOL_OPS(KILN_NO_OP_, X) KILN_NORMALIZATION_OPS(KILN_NO_OP_, X) KILN_REDUCE_OPS(KILN_NO_OP_, X) \
  KILN_MOVEMENT_OPS(KILN_NO_OP_, X) KILN_GENERATOR_OPS(KILN_NO_OP_, X) KILN_VISION_OPS(KILN_NO_OP_, X) \
  KILN_RECURRENT_OPS(KILN_NO_OP_, X) KILN_CONTROL_FLOW_OPS(KILN_NO_OP_, X) KILN_TEXT_OPS(KILN_NO_OP_, X)         \
  KILN_ML_OPS(KILN_NO_OP_, X)

enum class OpKind : uint16_t {
#define KILN_OP_ENUM(name) k##name,
  KILN_OPS(KILN_OP_ENUM)
#undef KILN_OP_ENUM
};

enum class OpFamily : uint8_t {
  kElementwise, kLinalg, kConv, kPool, kNormalization, kReduce, kMovement, kGenerator, kVision, kRecurrent,
  kControlFlow, kText, kMl
};
inline constexpr int kOpFamilyCount = 13;

std::string_view op_name(OpKind op);
std::optional<OpKind> op_from_name(std::string_view name);
int op_count();
// Made by the builder only (KILN_BUILDER_OPS): front ends and users may not use it.
bool is_builder_op(OpKind op);
OpFamily family_of(OpKind op);
std::string_view family_name(OpFamily family);  // "elementwise", the file name of the family in each layer

}  // namespace kiln::ir
KILN_API_END
