// Which nodes and op kinds the GPU runtime runs, known on the host: make_op
// only generates kernel sources and builds descriptions (cuDNN and cuBLASLt
// descriptors are made in Op::prepare), so asking it needs no device.
#include "kiln/error.h"
#include "kiln/ir/fused.h"
#include "kiln/runtime.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

std::vector<NodeSupport> gpu_support(const plan::Plan& plan) {
  KernelStore store;  // sources are generated into it, never compiled or loaded
  std::vector<NodeSupport> nodes;
  for (const ir::Node& node : plan.network.nodes()) {
    NodeSupport s{node.name, node.op, true, ""};
    try {
      s.supported = make_op(plan, node, store, s.reason, 0) != nullptr;
    } catch (const Error& e) {  // Engine::create would fail on this node with the same error
      s.supported = false;
      s.reason = e.what();
    }
    if (s.supported) s.reason.clear();
    nodes.push_back(std::move(s));
  }
  return nodes;
}

namespace {

GpuLowering elementwise_lowering(OpKind op) {
  std::string detail = str("elementwise kernel, ", integer_capable(op) ? "any type" : "floating types");
  if (op == OpKind::kMin || op == OpKind::kMax || op == OpKind::kMean || op == OpKind::kSum)
    detail += str(", at most ", ir::kFusedMaxArgs, " inputs");
  if (op == OpKind::kClip) detail += ", min and max as inputs (opset 11 on)";
  if (ir::is_fusable_elementwise(op)) detail += "; fused into FusedElementwise by `kiln build`";
  return {GpuLowering::kKernel, detail};
}

}  // namespace

// Every op kind has a case (no default): the registry test checks each
// against make_op on a sample node, so this table cannot drift from it.
GpuLowering gpu_lowering(OpKind op) {
  using K = GpuLowering::Kind;
  switch (op) {
    case OpKind::kAbs: case OpKind::kNeg: case OpKind::kSqrt: case OpKind::kReciprocal: case OpKind::kExp:
    case OpKind::kLog: case OpKind::kFloor: case OpKind::kCeil: case OpKind::kRound: case OpKind::kSign:
    case OpKind::kRelu: case OpKind::kSigmoid: case OpKind::kTanh: case OpKind::kErf: case OpKind::kSoftplus:
    case OpKind::kSoftsign: case OpKind::kSin: case OpKind::kCos: case OpKind::kTan: case OpKind::kAsin:
    case OpKind::kAcos: case OpKind::kAtan: case OpKind::kSinh: case OpKind::kCosh: case OpKind::kAsinh:
    case OpKind::kAcosh: case OpKind::kAtanh: case OpKind::kLeakyRelu: case OpKind::kElu: case OpKind::kSelu:
    case OpKind::kCelu: case OpKind::kHardSigmoid: case OpKind::kHardSwish: case OpKind::kGelu:
    case OpKind::kThresholdedRelu: case OpKind::kShrink: case OpKind::kClip: case OpKind::kNot: case OpKind::kIsNaN:
    case OpKind::kIsInf: case OpKind::kAdd: case OpKind::kSub: case OpKind::kMul: case OpKind::kDiv: case OpKind::kPow:
    case OpKind::kMod: case OpKind::kPRelu: case OpKind::kEqual: case OpKind::kLess: case OpKind::kLessOrEqual:
    case OpKind::kGreater: case OpKind::kGreaterOrEqual: case OpKind::kAnd: case OpKind::kOr: case OpKind::kXor:
    case OpKind::kMin: case OpKind::kMax: case OpKind::kMean: case OpKind::kSum: case OpKind::kWhere:
      return elementwise_lowering(op);
    case OpKind::kCast: case OpKind::kCastLike: return {K::kKernel, "conversion kernel, any types"};
    case OpKind::kIdentity: return {K::kKernel, "copy kernel; `kiln build` removes it where it can"};
    case OpKind::kDropout: return {K::kKernel, "copy kernel (inference); not with its mask output"};

    case OpKind::kMatMul:
      return {K::kByBuilder, "`kiln build` turns floating-point MatMuls of rank 2 and more into FusedMatMul"};
    case OpKind::kGemm: return {K::kByBuilder, "`kiln build` turns floating-point Gemms into FusedMatMul"};
    case OpKind::kBatchNormalization:
      return {K::kByBuilder, "`kiln build` folds it into the Conv before it or lowers it to elementwise ops"};

    case OpKind::kEinsum: case OpKind::kInstanceNormalization: case OpKind::kGroupNormalization: case OpKind::kTopK:
    case OpKind::kOneHot:
      return {K::kNone, "no GPU kernel yet"};
    case OpKind::kRange: return {K::kNone, "no GPU kernel yet (`kiln build` folds ranges of constants)"};

    case OpKind::kConv:
      return {K::kKernel, "cuDNN with symmetric explicit pads, else a generated direct kernel; floating types, rank 5 at most"};
    case OpKind::kConvTranspose: return {K::kKernel, "generated direct kernel; floating types, rank 5 at most"};
    case OpKind::kMaxPool: return {K::kKernel, "window kernel; floating types, rank 5 at most; not the Indices output"};
    case OpKind::kAveragePool: return {K::kKernel, "window kernel; floating types, rank 5 at most"};
    case OpKind::kLayerNormalization:
      return {K::kKernel, "row kernel; floating types; scale and bias cover the normalized block; Mean and InvStdDev both or neither"};
    case OpKind::kSoftmax: case OpKind::kLogSoftmax: case OpKind::kHardmax: return {K::kKernel, "row kernel; floating types"};
    case OpKind::kGlobalAveragePool: case OpKind::kGlobalMaxPool: case OpKind::kReduceMean: case OpKind::kReduceSum:
    case OpKind::kReduceMax: case OpKind::kReduceMin: case OpKind::kReduceProd: case OpKind::kReduceL1:
    case OpKind::kReduceL2: case OpKind::kReduceLogSum: case OpKind::kReduceLogSumExp: case OpKind::kReduceSumSquare:
      return {K::kKernel, "reduction kernel; floating types"};
    case OpKind::kArgMax: case OpKind::kArgMin: case OpKind::kCumSum: return {K::kKernel, "line kernel; any type but bool"};

    case OpKind::kReshape: case OpKind::kFlatten: case OpKind::kSqueeze: case OpKind::kUnsqueeze:
      return {K::kKernel, "a view of its input where the memory plan allows, else a copy; any type"};
    case OpKind::kTranspose: case OpKind::kConcat: case OpKind::kSplit: case OpKind::kSlice: case OpKind::kExpand:
    case OpKind::kTile: case OpKind::kDepthToSpace: case OpKind::kSpaceToDepth:
      return {K::kKernel, "strided copy kernel; any type"};
    case OpKind::kPad: return {K::kKernel, "strided copy kernel; any type; the pad value a constant"};
    case OpKind::kGather: return {K::kKernel, "gather kernel; any type"};
    case OpKind::kGatherElements:
      return {K::kKernel, "gather kernel; any type; indices the size of the data but along the axis"};
    case OpKind::kShape: case OpKind::kSize:
      return {K::kKernel, "its values follow from the shapes: written by a constants kernel"};
    case OpKind::kConstantOfShape: return {K::kKernel, "fill kernel; any type"};
    case OpKind::kTrilu: return {K::kKernel, "mask kernel; any type"};
    case OpKind::kResize: return {K::kKernel, "resize kernel; floating types; scales a constant"};

    case OpKind::kFusedMatMul:
      return {K::kKernel, "cuBLASLt, or a generated kernel for few rows, with the epilogue fused; floating types"};
    case OpKind::kFusedElementwise: return {K::kKernel, "one generated kernel per fused program"};
    case OpKind::kConvChannelsLast: return {K::kKernel, "cuDNN; rank 3 to 5, floating types, symmetric explicit pads"};
    case OpKind::kMaxPoolChannelsLast:
      return {K::kKernel, "cuDNN; rank 4 or 5, floating types, no dilation or ceil_mode, symmetric pads"};
    case OpKind::kAttention:
      return {K::kKernel, str("fused attention kernel, on tensor cores for fp16 and bf16 from sm_80; fp32, fp16 or bf16, "
                              "heads a constant size of at most ", codegen::kAttentionMaxHeadDim)};
  }
  return {GpuLowering::kNone, ""};  // a new op kind without a case: the registry test fails on the empty reason
}

}  // namespace kiln::runtime
