// The elementwise family: unary, binary and variadic ops with numpy
// broadcasting, casts, and the builder's FusedElementwise.
#include "kiln/ir/fused.h"
#include "family.h"

namespace kiln::ir {

namespace {

// x < y (strict) or x <= y, when it holds or fails for every size the symbols can take.
std::optional<bool> decide_less(const Dim& x, const Dim& y, bool strict) {
  auto gap = dim_lower_bound(y - x);  // y - x >= gap
  if (gap && *gap >= (strict ? 1 : 0)) return true;
  auto back = dim_lower_bound(x - y);  // x - y >= back
  if (back && *back >= (strict ? 0 : 1)) return false;
  return std::nullopt;
}

std::optional<bool> decide_compare(OpKind op, const Dim& x, const Dim& y) {
  switch (op) {
    case OpKind::kEqual: {
      if (x == y) return true;
      auto less = decide_less(x, y, true), greater = decide_less(y, x, true);
      if ((less && *less) || (greater && *greater)) return false;
      return std::nullopt;
    }
    case OpKind::kLess: return decide_less(x, y, true);
    case OpKind::kLessOrEqual: return decide_less(x, y, false);
    case OpKind::kGreater: return decide_less(y, x, true);
    case OpKind::kGreaterOrEqual: return decide_less(y, x, false);
    default: return std::nullopt;
  }
}

std::optional<std::vector<Dim>> known_binary(const Ctx& c, OpKind op) {
  auto a = c.ints(0), b = c.ints(1);
  if (!a || !b) return std::nullopt;
  if (a->size() != b->size() && a->size() != 1 && b->size() != 1) return std::nullopt;
  size_t n = std::max(a->size(), b->size());
  std::vector<Dim> out;
  for (size_t i = 0; i < n; ++i) {
    const Dim& x = (*a)[a->size() == 1 ? 0 : i];
    const Dim& y = (*b)[b->size() == 1 ? 0 : i];
    switch (op) {
      case OpKind::kAdd: out.push_back(x + y); break;
      case OpKind::kSub: out.push_back(x - y); break;
      case OpKind::kMul: out.push_back(x * y); break;
      case OpKind::kDiv:
        if (y == Dim(0)) return std::nullopt;
        out.push_back(floor_div(x, y));  // exact for the sizes shape arithmetic divides
        break;
      case OpKind::kMax: out.push_back(dim_max(x, y)); break;
      case OpKind::kMin: out.push_back(dim_min(x, y)); break;
      case OpKind::kEqual: case OpKind::kLess: case OpKind::kLessOrEqual: case OpKind::kGreater:
      case OpKind::kGreaterOrEqual: {
        auto holds = decide_compare(op, x, y);
        if (!holds) return std::nullopt;
        out.push_back(Dim(*holds ? 1 : 0));
        break;
      }
      case OpKind::kMod:
        if (y == Dim(0)) return std::nullopt;
        if (c.attrs().get_int("fmod", 0) == 0) out.push_back(floor_mod(x, y));
        else if (x.is_constant() && y.is_constant()) out.push_back(Dim(x.constant() % y.constant()));  // C remainder
        else return std::nullopt;
        break;
      default: return std::nullopt;
    }
  }
  return out;
}

// Integer values that shape arithmetic may compute with as dims: not uint64's,
// which past 2^63 are no dims and order as unsigned.
bool computes_as_dims(DType d) { return is_integer(d) && d != DType::kUInt64; }

void infer_unary(Ctx& c, bool float_only) {
  if (float_only) c.require_float(0);
  std::optional<std::vector<Dim>> known;
  if (c.node().op == OpKind::kIdentity) known = c.ints(0);
  if (c.node().op == OpKind::kNeg && computes_as_dims(c.dtype(0)) && (known = c.ints(0)))
    for (auto& d : *known) d = Dim(0) - d;
  if (c.node().op == OpKind::kNot && (known = c.ints(0))) {
    for (auto& d : *known) {
      if (!d.is_constant()) return c.set(0, c.dtype(0), c.shape(0));
      d = Dim(d.constant() ? 0 : 1);
    }
  }
  c.set(0, c.dtype(0), c.shape(0), known);
}

void infer_binary(Ctx& c, OpKind op) {
  bool compare = op == OpKind::kEqual || op == OpKind::kLess || op == OpKind::kLessOrEqual ||
                 op == OpKind::kGreater || op == OpKind::kGreaterOrEqual;
  bool logical = op == OpKind::kAnd || op == OpKind::kOr || op == OpKind::kXor;
  if (op != OpKind::kPow) c.require_same_dtype(0, 1);
  if (logical) c.require_dtype(0, {DType::kBool});
  if (op == OpKind::kPRelu) c.require_float(0);
  if (op == OpKind::kPRelu) c.require_broadcasts_to(1, c.shape(0), "X");
  Shape out = c.broadcast(c.shape(0), c.shape(1));
  bool known_ok = out.size() <= 1 && computes_as_dims(c.dtype(0));
  c.set(0, compare || logical ? DType::kBool : c.dtype(0), out, known_ok ? known_binary(c, op) : std::nullopt);
}

// Where over shape values (exporters write Where(size == -1, 1, size) around
// Expand): the selected values are known when the condition is.
std::optional<std::vector<Dim>> known_where(const Ctx& c, const Shape& out) {
  auto cond = c.ints(0), x = c.ints(1), y = c.ints(2);
  if (out.size() > 1 || (!out.empty() && !out[0].is_constant()) || !is_integer(c.dtype(1)) || !cond || !x || !y)
    return std::nullopt;
  size_t n = out.empty() ? 1 : size_t(out[0].constant());
  auto at = [n](const std::vector<Dim>& v, size_t i) { return v.size() == 1 ? &v[0] : v.size() == n ? &v[i] : nullptr; };
  std::vector<Dim> known;
  for (size_t i = 0; i < n; ++i) {
    const Dim *pick = at(*cond, i), *if_true = at(*x, i), *if_false = at(*y, i);
    if (!pick || !if_true || !if_false || !pick->is_constant()) return std::nullopt;
    known.push_back(pick->constant() ? *if_true : *if_false);
  }
  return known;
}

void infer_where(Ctx& c) {
  c.require_dtype(0, {DType::kBool});
  c.require_same_dtype(1, 2);
  Shape out = c.broadcast(c.broadcast(c.shape(0), c.shape(1)), c.shape(2));
  c.set(0, c.dtype(1), out, known_where(c, out));
}

// BitShift and the Bitwise ops: integer operands of one dtype (ONNX's
// constraint), numpy broadcasting.
void infer_bitwise(Ctx& c, OpKind op) {
  if (!is_integer(c.dtype(0)))
    c.error(ErrorCode::kTypeError, "input 0 has dtype ", dtype_name(c.dtype(0)), "; expected an integer type");
  if (op == OpKind::kBitwiseNot) return c.set(0, c.dtype(0), c.shape(0));
  c.require_same_dtype(0, 1);
  if (op == OpKind::kBitShift) {
    std::string direction = c.attrs().get_string("direction", "");
    if (direction != "LEFT" && direction != "RIGHT")
      c.error(ErrorCode::kInvalidModel, "direction '", direction, "' is not LEFT or RIGHT");
  }
  c.set(0, c.dtype(0), c.broadcast(c.shape(0), c.shape(1)));
}

void infer_variadic(Ctx& c, OpKind op) {
  Shape out = c.shape(0);
  for (size_t i = 1; i < c.num_inputs(); ++i) {
    c.require_same_dtype(0, i);
    out = c.broadcast(out, c.shape(i));
  }
  if (op == OpKind::kMean) c.require_float(0);
  std::optional<std::vector<Dim>> known;
  if (c.num_inputs() == 2 && out.size() <= 1 && computes_as_dims(c.dtype(0))) known = known_binary(c, op);
  c.set(0, c.dtype(0), out, known);
}

void infer_fused_elementwise(Ctx& c) {
  decode_fused_program(c.node());  // validates the program
  Shape out;
  std::optional<DType> dtype;
  for (size_t i = 0; i < c.num_inputs(); ++i) {
    out = c.broadcast(out, c.shape(i));
    if (c.dtype(i) == DType::kBool) continue;
    if (dtype && *dtype != c.dtype(i)) c.error(ErrorCode::kTypeError, "inputs mix ", dtype_name(*dtype), " and ", dtype_name(c.dtype(i)));
    dtype = c.dtype(i);
  }
  if (!dtype || !is_floating(*dtype)) c.error(ErrorCode::kTypeError, "FusedElementwise needs float inputs");
  c.set(0, *dtype, out);
}

void infer_cast(Ctx& c, OpKind op) {
  DType to;
  if (op == OpKind::kCastLike) {
    to = c.dtype(1);
  } else {
    std::optional<DType> code = dtype_from_code(c.attrs().get_int("to", -1));  // strings among them
    if (!code) c.error(ErrorCode::kInvalidModel, "'to' is not a dtype");
    to = *code;
  }
  std::string round_mode = c.attrs().get_string("round_mode", "up");
  if (!parse_e8m0_rounding(round_mode))
    c.error(ErrorCode::kInvalidModel, "round_mode '", round_mode, "' is not one of 'up', 'down' and 'nearest'");
  bool int_to_int = is_integer(c.dtype(0)) && is_integer(to);
  c.set(0, to, c.shape(0), int_to_int ? c.ints(0) : std::nullopt);
}

// The scale (input 1) and zero point (input 2) of QuantizeLinear and
// DequantizeLinear against x (input 0): one value, one per index along
// `axis` (a vector of x's dim there), or blocked (x's shape but dim `axis`
// ceil(D / block_size)). The zero point has the scale's shape.
void check_quant_params(Ctx& c) {
  if (c.dtype(1) != DType::kFloat8E8M0) c.require_float(1);  // float8e8m0: a power-of-two scale (ONNX 24)
  const Shape &x = c.shape(0), &scale = c.shape(1);
  int64_t block = c.attrs().get_int("block_size", 0);
  if (block < 0) c.error(ErrorCode::kInvalidModel, "block_size ", block, " is negative");
  auto single_value = [](const Shape& s) { return std::all_of(s.begin(), s.end(), [](const Dim& d) { return d == Dim(1); }); };
  bool single = single_value(scale);
  if (c.has(2) && !(single && single_value(c.shape(2)))) {  // one value each, of rank 0 or 1 ([1] against [] too)
    if (c.rank(2) != c.rank(1)) c.error(ErrorCode::kShapeError, "the zero point's shape ", shape_to_string(c.shape(2)),
                                         " differs from the scale's ", shape_to_string(scale));
    for (size_t d = 0; d < scale.size(); ++d) check_equal_dims(c, c.shape(2)[d], scale[d], "the zero point's and the scale's dims");
  }
  if (single) return;
  int64_t axis = c.axis(c.attrs().get_int("axis", 1), c.rank(0));
  if (block == 0) {
    if (scale.size() != 1)
      c.error(ErrorCode::kShapeError, "the scale has shape ", shape_to_string(scale),
              "; per-axis quantization takes a vector (blocked quantization needs block_size)");
    return check_equal_dims(c, scale[0], x[size_t(axis)], "the scale's length and x's dim along axis");
  }
  if (scale.size() != x.size())
    c.error(ErrorCode::kShapeError, "the scale has shape ", shape_to_string(scale), "; blocked quantization takes x's rank ", x.size());
  for (size_t d = 0; d < x.size(); ++d) {
    if (int64_t(d) != axis) check_equal_dims(c, scale[d], x[d], "the scale's and x's dims off the axis");
    else if (x[d].is_constant() && scale[d].is_constant() && (x[d].constant() + block - 1) / block != scale[d].constant())
      c.error(ErrorCode::kShapeError, "the scale's dim ", scale[d].constant(), " along axis ", axis, " is not ceil(", x[d].constant(),
              " / block_size ", block, ")");
  }
}

DType dtype_attr(const Ctx& c, const char* name) {
  std::optional<DType> dtype = numeric_dtype_from_code(c.attrs().get_int(name, -1));
  if (!dtype) c.error(ErrorCode::kInvalidModel, "'", name, "' is not a dtype");
  return *dtype;
}

// y = saturate(round(x / scale) + zero_point), rounding half to even; the
// output type is the zero point's, else output_dtype's, else uint8. Float
// output types round x / scale into their format, `saturate` (float8 only)
// telling whether values beyond its range saturate or become Inf or NaN.
void infer_quantize(Ctx& c) {
  c.require_dtype(0, {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt32});
  check_quant_params(c);
  DType out = c.attrs().has("output_dtype") ? dtype_attr(c, "output_dtype") : DType::kUInt8;
  if (c.has(2)) {
    if (c.attrs().has("output_dtype") && out != c.dtype(2))
      c.error(ErrorCode::kTypeError, "output_dtype ", dtype_name(out), " differs from the zero point's dtype ", dtype_name(c.dtype(2)));
    out = c.dtype(2);
  }
  if (out != DType::kInt8 && out != DType::kUInt8 && out != DType::kInt16 && out != DType::kUInt16 &&
      (!is_narrow(out) || out == DType::kFloat8E8M0))
    c.error(ErrorCode::kTypeError, "the quantized type is ", dtype_name(out),
            "; kiln quantizes to int8, uint8, int16, uint16, the 4- and 2-bit integers, the float8 formats and float4e2m1");
  if (c.attrs().has("precision") && !is_floating(dtype_attr(c, "precision")))
    c.error(ErrorCode::kTypeError, "precision ", dtype_name(dtype_attr(c, "precision")), " is not a float type");
  c.set(0, out, c.shape(0));
}

// y = (x - zero_point) * scale in the output type: output_dtype's, else the scale's.
void infer_dequantize(Ctx& c) {
  if (!is_narrow(c.dtype(0)) || c.dtype(0) == DType::kFloat8E8M0)  // float8e8m0 scales, it quantizes nothing
    c.require_dtype(0, {DType::kInt8, DType::kUInt8, DType::kInt16, DType::kUInt16, DType::kInt32});
  if (c.has(2)) c.require_same_dtype(0, 2);
  check_quant_params(c);
  DType out = c.attrs().has("output_dtype") ? dtype_attr(c, "output_dtype") : c.dtype(1);
  if (!is_floating(out) || out == DType::kFloat64)
    c.error(ErrorCode::kTypeError, "output_dtype ", dtype_name(out), " is not float32, float16 or bfloat16");
  c.set(0, out, c.shape(0));
}

}  // namespace

OpSchema elementwise_schema(OpKind op) {
  using T = AttrType;
  switch (op) {
    case OpKind::kAbs: case OpKind::kNeg: case OpKind::kSqrt: case OpKind::kReciprocal: case OpKind::kExp:
    case OpKind::kLog: case OpKind::kFloor: case OpKind::kCeil: case OpKind::kRound: case OpKind::kSign:
    case OpKind::kRelu: case OpKind::kSigmoid: case OpKind::kTanh: case OpKind::kErf: case OpKind::kSoftplus:
    case OpKind::kSoftsign: case OpKind::kSin: case OpKind::kCos: case OpKind::kTan: case OpKind::kAsin:
    case OpKind::kAcos: case OpKind::kAtan: case OpKind::kSinh: case OpKind::kCosh: case OpKind::kAsinh:
    case OpKind::kAcosh: case OpKind::kAtanh: case OpKind::kHardSwish: case OpKind::kNot: case OpKind::kIsNaN:
    case OpKind::kIdentity: case OpKind::kBitwiseNot:
      return OpSchema{};  // one input, one output, no attributes
    case OpKind::kLeakyRelu:
    case OpKind::kElu:
    case OpKind::kCelu:
    case OpKind::kThresholdedRelu: return {1, 1, 1, 1, {{"alpha", T::kFloat}}};
    case OpKind::kSelu: return {1, 1, 1, 1, {{"alpha", T::kFloat}, {"gamma", T::kFloat}}};
    case OpKind::kHardSigmoid: return {1, 1, 1, 1, {{"alpha", T::kFloat}, {"beta", T::kFloat}}};
    case OpKind::kGelu: return {1, 1, 1, 1, {{"approximate", T::kString}}};
    case OpKind::kShrink: return {1, 1, 1, 1, {{"bias", T::kFloat}, {"lambd", T::kFloat}}};
    case OpKind::kClip: return {1, 3, 1, 1, {{"min", T::kFloat, true}, {"max", T::kFloat, true}}};  // attrs: opset < 11 form
    case OpKind::kIsInf: return {1, 1, 1, 1, {{"detect_negative", T::kInt}, {"detect_positive", T::kInt}}};
    case OpKind::kCast: return {1, 1, 1, 1, {{"to", T::kInt}, {"saturate", T::kInt}, {"round_mode", T::kString}}};
    case OpKind::kCastLike: return {2, 2, 1, 1, {{"saturate", T::kInt}, {"round_mode", T::kString}}};
    case OpKind::kDropout: return {1, 3, 1, 2, {{"seed", T::kInt}}};
    case OpKind::kAdd:
    case OpKind::kSub:
    case OpKind::kMul:
    case OpKind::kDiv:
    case OpKind::kPow:
    case OpKind::kPRelu:
    case OpKind::kEqual:
    case OpKind::kLess:
    case OpKind::kLessOrEqual:
    case OpKind::kGreater:
    case OpKind::kGreaterOrEqual:
    case OpKind::kAnd:
    case OpKind::kOr:
    case OpKind::kXor: return {2, 2, 1, 1, {}};
    case OpKind::kMod: return {2, 2, 1, 1, {{"fmod", T::kInt}}};
    case OpKind::kBitShift: return {2, 2, 1, 1, {{"direction", T::kString}}};
    case OpKind::kBitwiseAnd: case OpKind::kBitwiseOr: case OpKind::kBitwiseXor: return {2, 2, 1, 1, {}};
    case OpKind::kMin:
    case OpKind::kMax:
    case OpKind::kMean:
    case OpKind::kSum: return {1, -1, 1, 1, {}};
    case OpKind::kWhere: return {3, 3, 1, 1, {}};
    // Dtype attributes hold kiln dtype codes (the importer converts ONNX's).
    case OpKind::kQuantizeLinear:
      return {2, 3, 1, 1,
              {{"axis", T::kInt}, {"block_size", T::kInt}, {"output_dtype", T::kInt}, {"precision", T::kInt}, {"saturate", T::kInt}}};
    case OpKind::kDequantizeLinear: return {2, 3, 1, 1, {{"axis", T::kInt}, {"block_size", T::kInt}, {"output_dtype", T::kInt}}};
    case OpKind::kFusedElementwise:  // a straight-line program of elementwise ops over broadcast inputs
      return {1, -1, 1, 1, {{"ops", T::kStrings}, {"args", T::kInts}, {"params", T::kFloats}}};
    default: return {0, 0, 0, 0, {}, false};
  }
}

void infer_elementwise(Ctx& c) {
  const Node& node = c.node();
  switch (node.op) {
    case OpKind::kAbs: case OpKind::kNeg: case OpKind::kSign: case OpKind::kRelu: case OpKind::kIdentity:
      infer_unary(c, false);
      break;
    case OpKind::kSqrt: case OpKind::kReciprocal: case OpKind::kExp: case OpKind::kLog: case OpKind::kFloor:
    case OpKind::kCeil: case OpKind::kRound: case OpKind::kSigmoid: case OpKind::kTanh: case OpKind::kErf:
    case OpKind::kSoftplus: case OpKind::kSoftsign: case OpKind::kSin: case OpKind::kCos: case OpKind::kTan:
    case OpKind::kAsin: case OpKind::kAcos: case OpKind::kAtan: case OpKind::kSinh: case OpKind::kCosh:
    case OpKind::kAsinh: case OpKind::kAcosh: case OpKind::kAtanh: case OpKind::kLeakyRelu: case OpKind::kElu:
    case OpKind::kSelu: case OpKind::kCelu: case OpKind::kHardSigmoid: case OpKind::kHardSwish: case OpKind::kGelu:
    case OpKind::kThresholdedRelu: case OpKind::kShrink:
      infer_unary(c, node.op != OpKind::kShrink);
      if (node.op == OpKind::kGelu) {
        std::string approximate = node.attrs.get_string("approximate", "none");
        if (approximate != "none" && approximate != "tanh")
          c.error(ErrorCode::kInvalidModel, "approximate '", approximate, "' is not none or tanh");
      }
      break;
    case OpKind::kClip:
      for (size_t i = 1; i < 3; ++i)
        if (c.has(i)) {
          c.require_same_dtype(0, i);
          if (c.rank(i) != 0 && !(c.rank(i) == 1 && c.shape(i)[0] == Dim(1)))
            c.error(ErrorCode::kShapeError, "min and max must be scalars");
        }
      c.set(0, c.dtype(0), c.shape(0));
      break;
    case OpKind::kDropout:
      c.set(0, c.dtype(0), c.shape(0));
      c.set(1, DType::kBool, c.shape(0));
      break;
    case OpKind::kNot:
      c.require_dtype(0, {DType::kBool});
      c.set(0, DType::kBool, c.shape(0));
      break;
    case OpKind::kIsNaN: case OpKind::kIsInf:
      c.require_float(0);
      c.set(0, DType::kBool, c.shape(0));
      break;
    case OpKind::kCast: case OpKind::kCastLike: infer_cast(c, node.op); break;
    case OpKind::kAdd: case OpKind::kSub: case OpKind::kMul: case OpKind::kDiv: case OpKind::kPow:
    case OpKind::kMod: case OpKind::kPRelu: case OpKind::kEqual: case OpKind::kLess: case OpKind::kLessOrEqual:
    case OpKind::kGreater: case OpKind::kGreaterOrEqual: case OpKind::kAnd: case OpKind::kOr: case OpKind::kXor:
      infer_binary(c, node.op);
      break;
    case OpKind::kMin: case OpKind::kMax: case OpKind::kMean: case OpKind::kSum: infer_variadic(c, node.op); break;
    case OpKind::kWhere: infer_where(c); break;
    case OpKind::kBitShift: case OpKind::kBitwiseAnd: case OpKind::kBitwiseOr: case OpKind::kBitwiseXor:
    case OpKind::kBitwiseNot:
      infer_bitwise(c, node.op);
      break;
    case OpKind::kQuantizeLinear: infer_quantize(c); break;
    case OpKind::kDequantizeLinear: infer_dequantize(c); break;
    case OpKind::kFusedElementwise: infer_fused_elementwise(c); break;
    default: no_inference(c);
  }
}

}  // namespace kiln::ir
