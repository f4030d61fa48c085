// The elementwise family on the GPU: fused programs, single elementwise ops, casts and copies.
#include "kiln/error.h"
#include "kiln/ir/fused.h"
#include "kiln/ir/quantization.h"
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

// The dims the kernel walks: the output's, and each input's, which broadcast
// to them (numpy rules). By default the tensors' own dims.
struct ElementwiseView {
  std::vector<int64_t> out;
  std::vector<std::vector<int64_t>> inputs;
};
using ViewFn = std::function<ElementwiseView(const ShapeEnv&)>;

class ElementwiseOp : public Op {
 public:
  // `inputs`: the values the kernel reads, in its argument order; `width`: its vector width.
  ElementwiseOp(const ir::Node& node, std::vector<ir::ValueId> inputs, int width, const KernelStore& store, int kernel,
                ViewFn view = nullptr)
      : node_(node), inputs_(std::move(inputs)), width_(width), store_(store), kernel_(kernel), view_(std::move(view)) {}

  void prepare(PrepareContext& ctx) const override {
    ElementwiseView view;
    if (view_) {
      view = view_(ctx.shapes);
    } else {
      view.out = ctx.shapes.of(node_.outputs[0]);
      for (ir::ValueId v : inputs_) view.inputs.push_back(ctx.shapes.of(v));
    }
    const std::vector<int64_t>& out = view.out;
    if (out.size() > size_t(codegen::kMaxRank))
      fail(ErrorCode::kUnsupported, "node '", node_.name, "': rank ", out.size(), " is above the GPU limit of ", codegen::kMaxRank);
    KernelLaunch k{store_.kernel(kernel_), 1, codegen::kBlock, {}, {}, &node_, kernel_};
    int64_t n = ir::checked_numel(out);
    if (n == 0) return;
    k.args.push_back({node_.outputs[0], 0});
    for (ir::ValueId v : inputs_) k.args.push_back({v, 0});
    codegen::ElementwiseParams q = codegen::elementwise_params(out, view.inputs, width_);
    k.params = codegen::pack(q);
    k.grid = grid_for(codegen::elementwise_threads(q, width_), ctx.sm_count);
    ctx.steps.push_back(std::move(k));
  }

  const ir::Node& node_;
  std::vector<ir::ValueId> inputs_;
  int width_;
  const KernelStore& store_;
  int kernel_;
  ViewFn view_;
};

// QuantizeLinear and DequantizeLinear: x and the scale and zero point as
// views that broadcast. Per axis: the parameters as [1.., C, ..1]; blocked:
// x's axis split into [blocks, block_size], the parameters [.., blocks, 1, ..],
// which needs the block size to divide x's dim (or a single block).
ElementwiseView quantize_view(const ir::Node& node, const ShapeEnv& shapes, size_t inputs) {
  const std::vector<int64_t> &x = shapes.of(node.inputs[0]), &scale = shapes.of(node.inputs[1]);
  ir::QuantGranularity g = ir::quant_granularity(node, x, scale);
  ElementwiseView v{x, {x}};
  std::vector<int64_t> param = scale;
  if (g.axis >= 0 && g.block_size == 0) {
    param.assign(x.size(), 1);
    param[size_t(g.axis)] = x[size_t(g.axis)];
  } else if (g.axis >= 0 && scale[size_t(g.axis)] != 1) {
    int64_t dim = x[size_t(g.axis)];
    if (dim % g.block_size != 0)
      fail(ErrorCode::kUnsupported, "node '", node.name, "' (", ir::op_name(node.op), "): blocked quantization on the GPU needs ",
           "the block size ", g.block_size, " to divide x's dim ", dim, " along axis ", g.axis, " (the CPU device runs it)");
    v.out.insert(v.out.begin() + g.axis + 1, g.block_size);
    v.out[size_t(g.axis)] = dim / g.block_size;
    param = v.out;
    param[size_t(g.axis) + 1] = 1;
    v.inputs[0] = v.out;
  }
  v.inputs.resize(inputs, param);
  return v;
}

std::unique_ptr<Op> make_quantize(const plan::Plan& plan, const ir::Node& node, KernelStore& store, const std::vector<ir::ValueId>& present,
                                  std::vector<DType> dtypes) {
  DType out = plan.network.value(node.outputs[0]).dtype;
  ir::FusedInstruction in;
  in.op = node.op;
  for (size_t i = 0; i < present.size(); ++i) in.args[i] = int(i);
  if (node.op == OpKind::kQuantizeLinear) {
    in.params[0] = double(ir::quantize_precision(node, dtypes[0], dtypes[1]));
    in.params[1] = double(out);
  }
  codegen::ElementwiseSpec spec{{in}, dtypes, out, std::nullopt};
  spec.saturate = node.attrs.get_int("saturate", 1) != 0;
  int width = codegen::elementwise_vector_width(dtypes, out);
  size_t inputs = present.size();
  return std::make_unique<ElementwiseOp>(node, present, width, store, store.add(node.name, specializing_generator(spec, codegen::elementwise_source)),
                                         [&node, inputs](const ShapeEnv& shapes) { return quantize_view(node, shapes, inputs); });
}

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
  bool dropout_mask = node.op == OpKind::kDropout && node.outputs.size() > 1 && node.outputs[1] != ir::kNoValue;
  if (node.op == OpKind::kCast || node.op == OpKind::kCastLike || node.op == OpKind::kIdentity || node.op == OpKind::kDropout) {
    DType from = dtypes[0];
    bool saturate = node.attrs.get_int("saturate", 1) != 0;
    E8M0Rounding rounding = *parse_e8m0_rounding(node.attrs.get_string("round_mode", "up"));  // inference checked it
    generator = [from, out, saturate, rounding](const auto& spec) { return codegen::cast_source(from, out, saturate, spec, rounding); };
    present.resize(1);  // CastLike's second input only names the dtype
  } else if (node.op == OpKind::kQuantizeLinear || node.op == OpKind::kDequantizeLinear) {
    if (present.size() != node.inputs.size()) {
      why = "an omitted scale";
      return nullptr;
    }
    return make_quantize(plan, node, store, present, dtypes);
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
  auto op = std::make_unique<ElementwiseOp>(node, present, width, store, store.add(node.name, generator));
  if (!dropout_mask) return op;
  // Inference keeps every element: the mask is all true, a fill of ones.
  ir::ValueId mask = node.outputs[1];
  std::vector<std::unique_ptr<Op>> parts;
  parts.push_back(std::move(op));
  parts.push_back(make_remap_op(node, store, DType::kBool, [mask](const ShapeEnv& s) {
    RemapPiece ones;  // every element lies outside a 0-sized source: all fill
    ones.src = ones.dst = mask;
    ones.dims = {ir::checked_numel(s.of(mask))};
    ones.src_strides = ones.dst_strides = {1};
    ones.src_dims = {0};
    ones.mode = codegen::PadMode::kConstant;
    ones.fill_bits = 1;
    return std::vector<RemapPiece>{ones};
  }));
  return std::make_unique<SequenceOp>(std::move(parts));
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
    case OpKind::kDropout: return {K::kKernel, "copy kernel (inference); its mask output all true, a fill kernel"};
    case OpKind::kFusedElementwise: return {K::kKernel, "one generated kernel per fused program"};
    case OpKind::kQuantizeLinear: case OpKind::kDequantizeLinear:
      return {K::kKernel, "elementwise kernel, int8/uint8/int16/uint16, the 4- and 2-bit integers, the float8 formats and float4e2m1 (scales of float types or float8e8m0); per tensor, per axis, or blocked where the block size divides the axis"};
    default: return {};
  }
}

}  // namespace kiln::runtime
