// The elementwise family on the GPU: fused programs, single elementwise ops, casts and copies.
#include "kiln/error.h"
#include "kiln/ir/fused.h"
#include "kiln/runtime.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

bool integer_capable(OpKind op) {
  switch (op) {
    case OpKind::kAbs: case OpKind::kNeg: case OpKind::kSign: case OpKind::kRelu: case OpKind::kAdd: case OpKind::kSub:
    case OpKind::kMul: case OpKind::kDiv: case OpKind::kPow: case OpKind::kMod: case OpKind::kMin: case OpKind::kMax:
    case OpKind::kSum: case OpKind::kClip: case OpKind::kWhere: case OpKind::kEqual: case OpKind::kLess:
    case OpKind::kLessOrEqual: case OpKind::kGreater: case OpKind::kGreaterOrEqual: case OpKind::kAnd: case OpKind::kOr:
    case OpKind::kXor: case OpKind::kNot: case OpKind::kBitShift: case OpKind::kBitwiseAnd: case OpKind::kBitwiseOr:
    case OpKind::kBitwiseXor: case OpKind::kBitwiseNot:
      return true;
    default: return false;
  }
}

namespace {

class ElementwiseOp : public Op {
 public:
  // `inputs`: the values the kernel reads, in its argument order; `width`: its vector width.
  ElementwiseOp(const ir::Node& node, std::vector<ir::ValueId> inputs, int width, const KernelStore& store, int kernel)
      : node_(node), inputs_(std::move(inputs)), width_(width), store_(store), kernel_(kernel) {}

  void prepare(PrepareContext& ctx) const override {
    const std::vector<int64_t>& out = ctx.shapes.of(node_.outputs[0]);
    if (out.size() > size_t(codegen::kMaxRank))
      fail(ErrorCode::kUnsupported, "node '", node_.name, "': rank ", out.size(), " is above the GPU limit of ", codegen::kMaxRank);
    KernelLaunch k{store_.kernel(kernel_), 1, codegen::kBlock, {}, {}, &node_, kernel_};
    int64_t n = ir::checked_numel(out);
    if (n == 0) return;
    std::vector<std::vector<int64_t>> inputs;
    k.args.push_back({node_.outputs[0], 0});
    for (ir::ValueId v : inputs_) {
      inputs.push_back(ctx.shapes.of(v));
      k.args.push_back({v, 0});
    }
    codegen::ElementwiseParams q = codegen::elementwise_params(out, inputs, width_);
    k.params = codegen::pack(q);
    k.grid = grid_for(codegen::elementwise_threads(q, width_), ctx.sm_count);
    ctx.steps.push_back(std::move(k));
  }

  const ir::Node& node_;
  std::vector<ir::ValueId> inputs_;
  int width_;
  const KernelStore& store_;
  int kernel_;
};

}  // namespace

// Builds the elementwise op for nodes the elementwise template covers.
std::unique_ptr<Op> make_elementwise(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why,
                                     int /*arch*/) {
  const ir::Network& net = plan.network;
  // The kernel reads the present inputs only; instructions name absent ones -1.
  std::vector<ir::ValueId> present;
  std::vector<DType> dtypes;
  std::vector<int> arg_of_input;
  for (ir::ValueId v : node.inputs) {
    arg_of_input.push_back(v == ir::kNoValue ? -1 : int(present.size()));
    if (v == ir::kNoValue) continue;
    present.push_back(v);
    dtypes.push_back(net.value(v).dtype);
  }
  if (present.size() > size_t(codegen::kElementwiseMaxInputs)) {
    why = str(present.size(), " inputs");
    return nullptr;
  }
  DType out = net.value(node.outputs[0]).dtype;
  KernelStore::Generator generator;
  if (node.op == OpKind::kCast || node.op == OpKind::kCastLike || node.op == OpKind::kIdentity || node.op == OpKind::kDropout) {
    if (node.op == OpKind::kDropout && node.outputs.size() > 1 && node.outputs[1] != ir::kNoValue) {
      why = "Dropout's mask output";
      return nullptr;
    }
    DType from = dtypes[0];
    generator = [from, out](const auto& spec) { return codegen::cast_source(from, out, spec); };
    present.resize(1);  // CastLike's second input only names the dtype
  } else if (node.op == OpKind::kFusedElementwise) {
    if (present.size() != node.inputs.size()) {
      why = "an omitted input";
      return nullptr;
    }
    codegen::ElementwiseSpec spec{ir::decode_fused_program(node), dtypes, out, std::nullopt};
    generator = specializing_generator(spec, codegen::elementwise_source);
  } else if (ir::is_elementwise(node.op) && node.inputs.size() <= size_t(ir::kFusedMaxArgs) && !node.attrs.has("min") &&
             !node.attrs.has("max")) {
    ir::FusedInstruction in = ir::instruction_from_node(node);
    for (size_t i = 0; i < node.inputs.size(); ++i) in.args[i] = arg_of_input[i];
    // Float-only math needs float operands; integer and bool inputs take the integer forms.
    DType lead = dtypes[node.op == OpKind::kWhere ? 1 : 0];
    if (!is_floating(lead) && !integer_capable(node.op)) {
      why = str("dtype ", dtype_name(lead));
      return nullptr;
    }
    codegen::ElementwiseSpec spec{{in}, dtypes, out, std::nullopt};
    generator = specializing_generator(spec, codegen::elementwise_source);
  } else if (node.attrs.has("min") || node.attrs.has("max")) {
    why = "Clip with min/max attributes (opset < 11) instead of inputs";
    return nullptr;
  } else {
    why = str(node.inputs.size(), " inputs; a single-op kernel takes at most ", ir::kFusedMaxArgs);
    return nullptr;
  }
  dtypes.resize(present.size());
  int width = codegen::elementwise_vector_width(dtypes, out);
  return std::make_unique<ElementwiseOp>(node, present, width, store, store.add(node.name, generator));
}

GpuLowering describe_elementwise(OpKind op) {
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
    case OpKind::kMin: case OpKind::kMax: case OpKind::kMean: case OpKind::kSum: case OpKind::kWhere: {
      std::string detail = str("elementwise kernel, ", integer_capable(op) ? "any type" : "floating types");
      if (op == OpKind::kMin || op == OpKind::kMax || op == OpKind::kMean || op == OpKind::kSum)
        detail += str(", at most ", ir::kFusedMaxArgs, " inputs");
      if (op == OpKind::kClip) detail += ", min and max as inputs (opset 11 on)";
      if (ir::is_fusable_elementwise(op)) detail += "; fused into FusedElementwise by `kiln build`";
      return {K::kKernel, detail};
    }
    // Integer types only, so never fused: FusedElementwise programs compute in floating point.
    case OpKind::kBitShift: case OpKind::kBitwiseAnd: case OpKind::kBitwiseOr: case OpKind::kBitwiseXor:
    case OpKind::kBitwiseNot:
      return {K::kKernel, "elementwise kernel, integer types; not fused (FusedElementwise computes in floating point)"};
    case OpKind::kCast: case OpKind::kCastLike: return {K::kKernel, "conversion kernel, any types"};
    case OpKind::kIdentity: return {K::kKernel, "copy kernel; `kiln build` removes it where it can"};
    case OpKind::kDropout: return {K::kKernel, "copy kernel (inference); not with its mask output"};
    case OpKind::kFusedElementwise: return {K::kKernel, "one generated kernel per fused program"};
    default: return {};
  }
}

}  // namespace kiln::runtime
