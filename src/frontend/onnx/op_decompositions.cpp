// ONNX ops that become several kiln ops: Attention (23-25), RMSNormalization
// and RotaryEmbedding (23), Mish (18), Swish (24), SwiGLU (28),
// GroupNormalization-18, SpaceToDepth-28's CRD mode, CenterCropPad-18,
// DynamicQuantizeLinear (11), MeanVarianceNormalization (9, 13) and
// ai.onnx.preview's FlexAttention (1). Each follows ONNX's definition (its reference implementation and
// function body) in ops the builder fuses and the GPU runs; what does not
// decompose cleanly is refused, naming the attribute or input. The
// translations read their inputs' dtypes and shapes (GraphBuilder::infer), as
// ONNX's own function bodies are expanded with the input types at hand.
#include <cmath>
#include <limits>
#include <map>

#include "importer.h"
#include "kiln/error.h"

namespace kiln::onnx {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

ir::Attributes attrs(std::initializer_list<std::pair<const char*, ir::AttrValue>> list) {
  ir::Attributes a;
  for (auto& [name, value] : list) a.set(name, value);
  return a;
}

// A tensor's dtype and shape at import time.
struct Typed {
  ValueId id = ir::kNoValue;
  DType dtype = DType::kFloat32;
  ir::Shape shape;
  int64_t rank() const { return int64_t(shape.size()); }
};

// The nodes of one ONNX node's translation, each named after it ("attn/scores").
class Expansion {
 public:
  Expansion(GraphBuilder& b, const ir::Node& node, std::string type, std::string where)
      : b_(b), node_(node), type_(std::move(type)), where_(std::move(where)) {}

  template <class... Args>
  [[noreturn]] void error(ErrorCode code, const Args&... args) const {
    fail(code, where_, ": ", args...);
  }
  // Refuses attributes the op does not have in this version (a newer version's, or a typo).
  void check_attributes(std::initializer_list<std::string_view> known, int version) const {
    for (auto& [name, value] : node_.attrs.all())
      if (std::find(known.begin(), known.end(), name) == known.end())
        error(ErrorCode::kUnsupported, "attribute '", name, "' is not one of ", type_, "-", version, "'s");
  }

  bool has(size_t i) const { return i < node_.inputs.size() && node_.inputs[i] != ir::kNoValue; }
  Typed input(size_t i, const char* what) const {
    if (!has(i)) error(ErrorCode::kInvalidModel, "input ", i, " (", what, ") is required");
    std::optional<ir::InferOutput> info = b_.infer(node_.inputs[i]);
    if (!info)
      error(ErrorCode::kInvalidModel, "input ", i, " (", what, ", '", b_.net().value(node_.inputs[i]).name,
            "') is read before a node makes it; kiln translates ", type_,
            " from its inputs' types and needs the nodes in topological order, as ONNX requires");
    return Typed{node_.inputs[i], info->dtype, info->shape};
  }
  Typed input_of_rank(size_t i, const char* what, std::initializer_list<int64_t> ranks) const {
    Typed t = input(i, what);
    if (std::find(ranks.begin(), ranks.end(), t.rank()) == ranks.end()) {
      std::string expected;
      for (int64_t r : ranks) expected += str(expected.empty() ? "" : " or ", r);
      error(ErrorCode::kShapeError, "input ", i, " (", what, ") has shape ", ir::shape_to_string(t.shape), "; expected rank ", expected);
    }
    return t;
  }
  bool wants_output(size_t i) const { return i < node_.outputs.size() && node_.outputs[i] != ir::kNoValue; }
  ValueId output(size_t i) const { return wants_output(i) ? node_.outputs[i] : ir::kNoValue; }

  ValueId op(OpKind op, std::vector<ValueId> inputs, const std::string& part, ir::Attributes a = {}, ValueId out = ir::kNoValue) {
    return b_.op(op, std::move(inputs), str(node_.name, "/", part), std::move(a), out);
  }
  ValueId ints(const std::string& part, const std::vector<int64_t>& values) {
    return b_.const_ints(str(node_.name, "/", part), values);
  }
  ValueId scalar(const std::string& part, double value, DType dtype) {
    return b_.const_scalar(str(node_.name, "/", part), value, dtype);
  }
  ValueId boolean(const std::string& part, bool value) { return b_.const_bool(str(node_.name, "/", part), value); }
  // dims [start, end) of x as an int64 vector (constant when they are).
  ValueId dims(const std::string& part, const Typed& x, int64_t start, int64_t end) {
    std::vector<int64_t> values;
    for (int64_t i = start; i < end && x.shape[size_t(i)].is_constant(); ++i) values.push_back(x.shape[size_t(i)].constant());
    if (int64_t(values.size()) == end - start) return ints(part, values);
    return op(OpKind::kShape, {x.id}, part, attrs({{"start", start}, {"end", end}}));
  }
  ValueId cast(ValueId x, DType from, DType to, const std::string& part) {
    return from == to ? x : op(OpKind::kCast, {x}, part, attrs({{"to", int64_t(to)}}));
  }
  // 0, 1, ..., n-1 (int64) for the dim `axis` of x.
  ValueId positions(const std::string& part, const Typed& x, int64_t axis) {
    const Dim& n = x.shape[size_t(axis)];
    if (n.is_constant()) {
      std::vector<int64_t> v(size_t(n.constant()));
      for (size_t i = 0; i < v.size(); ++i) v[i] = int64_t(i);
      return ints(part, v);
    }
    ir::TensorData one;
    one.dtype = DType::kInt64;
    one.dims = {1};
    int64_t value = 1;
    one.data = Buffer::copy_of(&value, sizeof(value));
    ValueId ones = op(OpKind::kConstantOfShape, {dims(str(part, "_len"), x, axis, axis + 1)}, str(part, "_ones"),
                      attrs({{"value", one}}));
    return op(OpKind::kCumSum, {ones, ints(str(part, "_axis"), {0})}, part, attrs({{"exclusive", int64_t(1)}}));
  }

 private:
  GraphBuilder& b_;
  const ir::Node& node_;
  std::string type_, where_;
};

// Heads split off the last dim of a 3-D [B, S, H*D] input: [B, H, S, D].
ValueId split_heads(Expansion& e, const Typed& x, int64_t heads, const std::string& part) {
  const Dim& hidden = x.shape[2];
  if (heads < 1 || (hidden.is_constant() && hidden.constant() % heads != 0))
    e.error(ErrorCode::kInvalidModel, "a hidden size of ", hidden.to_string(), " does not split into ", heads, " heads");
  ValueId r = e.op(OpKind::kReshape, {x.id, e.ints(str(part, "_heads_shape"), {0, 0, heads, -1})},
                   str(part, "_heads"));
  return e.op(OpKind::kTranspose, {r}, str(part, "_bhsd"), attrs({{"perm", std::vector<int64_t>{0, 2, 1, 3}}}));
}

// K or V [B, Hkv, S, D] repeated to [B, Hq, S, D], each KV head serving
// Hq/Hkv query heads in turn (ONNX's interleaved repeat: h0, h0, h1, h1, ...).
ValueId repeat_kv_heads(Expansion& e, const Typed& kv, const Typed& q, const std::string& part) {
  const Dim &hq = q.shape[1], &hkv = kv.shape[1];
  if (hq == hkv) return kv.id;
  ValueId reps;
  if (hq.is_constant() && hkv.is_constant()) {
    if (hkv.constant() < 1 || hq.constant() % hkv.constant() != 0)
      e.error(ErrorCode::kInvalidModel, hq.constant(), " query heads do not share ", hkv.constant(), " key/value heads evenly");
    reps = e.ints(str(part, "_reps"), {1, 1, hq.constant() / hkv.constant(), 1, 1});
  } else {
    ValueId group = e.op(OpKind::kDiv, {e.dims(str(part, "_hq"), q, 1, 2), e.dims(str(part, "_hkv"), kv, 1, 2)},
                         str(part, "_group"));
    reps = e.op(OpKind::kConcat, {e.ints(str(part, "_ones_before"), {1, 1}), group, e.ints(str(part, "_ones_after"), {1, 1})},
                str(part, "_reps"), attrs({{"axis", int64_t(0)}}));
  }
  ValueId grouped = e.op(OpKind::kUnsqueeze, {kv.id, e.ints(str(part, "_axis"), {2})}, str(part, "_grouped"));
  ValueId repeated = e.op(OpKind::kExpand, {grouped, reps}, str(part, "_repeated"));
  ValueId shape = e.op(OpKind::kConcat, {e.ints(str(part, "_batch_heads"), {0, -1}), e.dims(str(part, "_sd"), kv, 2, 4)},
                       str(part, "_shape"), attrs({{"axis", int64_t(0)}}));
  return e.op(OpKind::kReshape, {repeated, shape}, str(part, "_heads"));
}

}  // namespace

// ONNX Attention (23, 24, 25): softmax(scale * Q K^T + bias) V over heads.
//  - 3-D inputs [B, S, H*D] (q_num_heads, kv_num_heads) are split into heads
//    and the result merged back; 4-D inputs are [B, H, S, D].
//  - past_key/past_value are concatenated in front of K and V (present_key/value).
//  - grouped-query attention: each KV head serves Hq/Hkv query heads.
//  - the bias: attn_mask (bool: False excludes a key; float: added; a shorter
//    last dim is padded with excluded keys), is_causal (key j excluded from query
//    row i when j > i + offset, the offset being the past length, or per batch
//    nonpad_kv_seqlen - Sq), nonpad_kv_seqlen (keys j >= nonpad excluded), and
//    opset 25's windows. A query row with every key excluded is zero, not NaN.
//  - softcap, softmax_precision and the four qk_matmul_output modes.
// Plain or causal attention without masks comes out as MatMul, Mul by the
// scale, Where of a causal mask and Softmax: the pattern `kiln build` fuses
// into its Attention kernel.
void translate_attention(GraphBuilder& b, const ir::Node& node, const std::string& where) {
  int version = onnx_op_version("Attention", b.opset());
  Expansion e(b, node, "Attention", where);
  if (version >= 25)
    e.check_attributes({"is_causal", "kv_num_heads", "q_num_heads", "qk_matmul_output_mode", "scale", "softcap",
                        "softmax_precision", "left_window_size", "right_window_size"}, version);
  else
    e.check_attributes({"is_causal", "kv_num_heads", "q_num_heads", "qk_matmul_output_mode", "scale", "softcap",
                        "softmax_precision"}, version);
  size_t max_inputs = version >= 24 ? 7 : 6;
  if (node.inputs.size() > max_inputs) e.error(ErrorCode::kInvalidModel, "Attention-", version, " has at most ", max_inputs, " inputs");
  Typed q = e.input_of_rank(0, "Q", {3, 4}), k = e.input_of_rank(1, "K", {3, 4}), v = e.input_of_rank(2, "V", {3, 4});
  if (k.rank() != q.rank() || v.rank() != q.rank())
    e.error(ErrorCode::kShapeError, "Q, K and V have ranks ", q.rank(), ", ", k.rank(), " and ", v.rank(), "; they must match");
  const DType t = q.dtype;
  if (!is_floating(t)) e.error(ErrorCode::kTypeError, "Q has dtype ", dtype_name(t), "; expected a float type");
  if (k.dtype != t || v.dtype != t)
    e.error(ErrorCode::kUnsupported, "K and V of dtypes other than Q's (", dtype_name(k.dtype), " and ", dtype_name(v.dtype),
            " with ", dtype_name(t), ") are not supported");
  const ir::Attributes& a = node.attrs;
  const bool three_d = q.rank() == 3;
  int64_t q_heads = a.get_int("q_num_heads", 0), kv_heads = a.get_int("kv_num_heads", 0);

  // Q, K, V as [B, H, S, D].
  if (three_d) {
    if (!a.has("q_num_heads") || !a.has("kv_num_heads"))
      e.error(ErrorCode::kInvalidModel, "3-D inputs need both q_num_heads and kv_num_heads");
    auto split = [&](const Typed& x, int64_t heads, const std::string& part) {
      ValueId id = split_heads(e, x, heads, part);
      return Typed{id, t, {x.shape[0], Dim(heads), x.shape[1], floor_div(x.shape[2], Dim(heads))}};
    };
    q = split(q, q_heads, "q");
    k = split(k, kv_heads, "k");
    v = split(v, kv_heads, "v");
  } else if (a.has("q_num_heads") || a.has("kv_num_heads")) {
    // ONNX-25 forbids them with 4-D inputs; before, they had to agree with the inputs' head dims.
    if (version >= 25) e.error(ErrorCode::kInvalidModel, "q_num_heads and kv_num_heads are for 3-D inputs only");
    if ((a.has("q_num_heads") && q.shape[1] != Dim(q_heads)) || (a.has("kv_num_heads") && k.shape[1] != Dim(kv_heads)))
      e.error(ErrorCode::kInvalidModel, "q_num_heads/kv_num_heads (", q_heads, "/", kv_heads, ") disagree with the head dims ",
              q.shape[1].to_string(), "/", k.shape[1].to_string(), " of Q and K");
  }

  // The KV cache: past keys and values in front of the new ones.
  if (e.has(4) != e.has(5)) e.error(ErrorCode::kInvalidModel, "past_key and past_value go together");
  std::optional<Typed> past_k;
  if (e.has(4)) {
    past_k = e.input_of_rank(4, "past_key", {4});
    Typed past_v = e.input_of_rank(5, "past_value", {4});
    ir::Attributes seq = attrs({{"axis", int64_t(2)}});
    ir::Shape k_shape = k.shape, v_shape = v.shape;
    k_shape[2] = past_k->shape[2] + k.shape[2];
    v_shape[2] = past_v.shape[2] + v.shape[2];
    k = Typed{e.op(OpKind::kConcat, {past_k->id, k.id}, "present_key", seq, e.output(1)), t, k_shape};
    v = Typed{e.op(OpKind::kConcat, {past_v.id, v.id}, "present_value", seq, e.output(2)), t, v_shape};
  } else {
    if (e.wants_output(1)) e.op(OpKind::kIdentity, {k.id}, "present_key", {}, e.output(1));
    if (e.wants_output(2)) e.op(OpKind::kIdentity, {v.id}, "present_value", {}, e.output(2));
  }
  std::optional<Typed> nonpad;
  if (e.has(6)) {
    if (past_k) e.error(ErrorCode::kInvalidModel, "nonpad_kv_seqlen does not go with past_key and past_value");
    nonpad = e.input_of_rank(6, "nonpad_kv_seqlen", {1});
  }
  ValueId keys = repeat_kv_heads(e, k, q, "k_rep"), values = repeat_kv_heads(e, v, q, "v_rep");

  // Scores: scale * Q K^T, soft-capped.
  ValueId scale;
  const Dim& head_dim = q.shape[3];
  if (a.has("scale")) {
    scale = e.scalar("scale", a.get_float("scale", 1.0), t);
  } else if (head_dim.is_constant()) {
    scale = e.scalar("scale", 1.0 / std::sqrt(double(head_dim.constant())), t);
  } else {  // 1 / sqrt(D) for a head dim known at run time only
    ValueId d = e.op(OpKind::kCast, {e.dims("head_dim", q, 3, 4)}, "head_dim_float", attrs({{"to", int64_t(t)}}));
    scale = e.op(OpKind::kReciprocal, {e.op(OpKind::kSqrt, {d}, "sqrt_head_dim")}, "scale");
  }
  ValueId kt = e.op(OpKind::kTranspose, {keys}, "k_transposed", attrs({{"perm", std::vector<int64_t>{0, 1, 3, 2}}}));
  ValueId raw_scores = e.op(OpKind::kMul, {e.op(OpKind::kMatMul, {q.id, kt}, "qk"), scale}, "scores");
  ValueId scores = raw_scores;
  double softcap = a.get_float("softcap", 0.0);
  if (softcap > 0) {  // softcap * tanh(scores / softcap)
    ValueId cap = e.scalar("softcap", softcap, t);
    ValueId tanh = e.op(OpKind::kTanh, {e.op(OpKind::kDiv, {scores, cap}, "softcap_in")}, "softcap_tanh");
    scores = e.op(OpKind::kMul, {tanh, cap}, "capped_scores");
  }

  // Keys left out by position: j > p (causal), j > p + right, j < p - left,
  // j >= nonpad, for query row i at position p = i + offset.
  bool causal = a.get_int("is_causal", 0) != 0;
  int64_t left = a.get_int("left_window_size", -1), right = a.get_int("right_window_size", -1);
  if (left < -1 || right < -1) e.error(ErrorCode::kInvalidModel, "window sizes must be -1 (unbounded) or >= 0");
  ValueId excluded = ir::kNoValue;
  auto exclude = [&](ValueId more, const char* part) {
    excluded = excluded == ir::kNoValue ? more : e.op(OpKind::kOr, {excluded, more}, part);
  };
  ValueId col = ir::kNoValue;
  if (causal || left >= 0 || right >= 0 || nonpad)
    col = e.op(OpKind::kUnsqueeze, {e.positions("key_pos", k, 2), e.ints("key_pos_axis", {0})}, "key_col");  // [1, Skv]
  if (causal || left >= 0 || right >= 0) {
    ValueId row = e.op(OpKind::kUnsqueeze, {e.positions("query_pos", q, 2), e.ints("query_pos_axis", {1})}, "query_row");
    if (nonpad) {  // per batch: nonpad_kv_seqlen - Sq, so rows become [B, 1, Sq, 1]
      ValueId shift = e.op(OpKind::kSub, {nonpad->id, e.dims("q_len", q, 2, 3)}, "offset");
      ValueId shift_b = e.op(OpKind::kUnsqueeze, {shift, e.ints("offset_axes", {1, 2, 3})}, "offset_per_batch");
      row = e.op(OpKind::kAdd, {row, shift_b}, "query_pos_shifted");
    } else if (past_k) {
      row = e.op(OpKind::kAdd, {row, e.dims("offset", *past_k, 2, 3)}, "query_pos_shifted");
    }
    if (causal) exclude(e.op(OpKind::kGreater, {col, row}, "causal"), "causal_or");
    if (right >= 0) {
      ValueId edge = e.op(OpKind::kAdd, {row, e.ints("right", {right})}, "right_edge");
      exclude(e.op(OpKind::kGreater, {col, edge}, "right_window"), "right_window_or");
    }
    if (left >= 0) {
      ValueId edge = e.op(OpKind::kSub, {row, e.ints("left", {left})}, "left_edge");
      exclude(e.op(OpKind::kLess, {col, edge}, "left_window"), "left_window_or");
    }
  }
  if (nonpad) {
    ValueId limit = e.op(OpKind::kUnsqueeze, {nonpad->id, e.ints("nonpad_axes", {1, 2, 3})}, "nonpad_per_batch");
    exclude(e.op(OpKind::kGreaterOrEqual, {col, limit}, "padding"), "padding_or");
  }

  // The bias: a causal mask alone leaves every row key 0 and is a Where on
  // the scores (what `kiln build` fuses); anything else is an additive bias,
  // and the rows it empties are zeroed after the softmax.
  ValueId minus_inf = e.scalar("minus_inf", -kInf, t);
  ValueId logits = scores, bias = ir::kNoValue, zero = ir::kNoValue;
  bool causal_only = causal && !e.has(3) && !nonpad && left < 0 && right < 0;
  if (causal_only) {
    logits = e.op(OpKind::kWhere, {excluded, minus_inf, scores}, "causal_scores");
  } else if (e.has(3) || excluded != ir::kNoValue) {
    zero = e.scalar("zero", 0.0, t);
    if (e.has(3)) {
      Typed mask = e.input_of_rank(3, "attn_mask", {1, 2, 3, 4});
      if (mask.dtype != DType::kBool && mask.dtype != t)
        e.error(ErrorCode::kTypeError, "attn_mask has dtype ", dtype_name(mask.dtype), "; expected bool or Q's ", dtype_name(t));
      ValueId m = mask.id;
      if (mask.shape.back() != k.shape[2]) {  // a shorter mask leaves the keys after it out
        ValueId missing = e.op(OpKind::kSub, {e.dims("kv_len", k, 2, 3), e.dims("mask_len", mask, mask.rank() - 1, mask.rank())},
                               "mask_missing");
        ValueId pads = e.op(OpKind::kConcat, {e.ints("mask_pad_begin", {0}), missing}, "mask_pads", attrs({{"axis", int64_t(0)}}));
        ValueId fill = mask.dtype == DType::kBool ? e.boolean("mask_fill", false) : minus_inf;
        m = e.op(OpKind::kPad, {m, pads, fill, e.ints("mask_pad_axis", {-1})}, "mask_padded");
      }
      bias = mask.dtype == DType::kBool ? e.op(OpKind::kWhere, {m, zero, minus_inf}, "mask_bias") : m;
    }
    if (excluded != ir::kNoValue) {
      ValueId position_bias = e.op(OpKind::kWhere, {excluded, minus_inf, zero}, "position_bias");
      bias = bias == ir::kNoValue ? position_bias : e.op(OpKind::kAdd, {bias, position_bias}, "bias");
    }
    logits = e.op(OpKind::kAdd, {scores, bias}, "biased_scores");
  }

  // Softmax over the keys, at softmax_precision when given.
  ValueId probs;
  if (a.has("softmax_precision")) {
    int64_t code = a.get_int("softmax_precision", 0);
    std::optional<DType> precision = dtype_from_onnx(int32_t(code));
    if (!precision || !is_floating(*precision))
      e.error(ErrorCode::kInvalidModel, "softmax_precision ", code, " is not FLOAT (1), FLOAT16 (10), DOUBLE (11) or BFLOAT16 (16)");
    ValueId in = e.cast(logits, t, *precision, "softmax_in");
    probs = e.cast(e.op(OpKind::kSoftmax, {in}, "softmax", attrs({{"axis", int64_t(-1)}})), *precision, t, "softmax_out");
  } else {
    probs = e.op(OpKind::kSoftmax, {logits}, "softmax", attrs({{"axis", int64_t(-1)}}));
  }
  if (bias != ir::kNoValue) {  // decided on the bias, as ONNX does: NaN scores do not empty a row
    ValueId row_max = e.op(OpKind::kReduceMax, {bias, e.ints("row_axis", {-1})}, "bias_row_max", attrs({{"keepdims", int64_t(1)}}));
    ValueId empty = e.op(OpKind::kEqual, {row_max, minus_inf}, "empty_row");
    probs = e.op(OpKind::kWhere, {empty, zero, probs}, "probs");
  }
  if (e.wants_output(3)) {
    int64_t mode = a.get_int("qk_matmul_output_mode", 0);
    if (mode < 0 || mode > 3) e.error(ErrorCode::kInvalidModel, "qk_matmul_output_mode ", mode, " is not 0, 1, 2 or 3");
    ValueId chosen = mode == 0 ? raw_scores : mode == 1 ? scores : mode == 2 ? logits : probs;
    e.op(OpKind::kIdentity, {chosen}, "qk_matmul_output", {}, e.output(3));
  }

  // Y: [B, H, Sq, Dv], or for 3-D inputs the heads merged back: [B, Sq, H*Dv].
  ValueId y = e.op(OpKind::kMatMul, {probs, values}, "attended", {}, three_d ? ir::kNoValue : e.output(0));
  if (three_d) {
    ValueId merged = e.op(OpKind::kTranspose, {y}, "heads_back", attrs({{"perm", std::vector<int64_t>{0, 2, 1, 3}}}));
    e.op(OpKind::kReshape, {merged, e.ints("merged_shape", {0, 0, -1})}, "merged", {}, e.output(0));
  }
}

// RMSNormalization-23: X / sqrt(mean(X^2 over axes [axis, rank)) + epsilon)
// computed in stash_type, then cast to the scale's type and scaled.
void translate_rms_normalization(GraphBuilder& b, const ir::Node& node, const std::string& where) {
  Expansion e(b, node, "RMSNormalization", where);
  e.check_attributes({"axis", "epsilon", "stash_type"}, 23);
  Typed x = e.input(0, "X"), scale = e.input(1, "scale");
  if (!is_floating(x.dtype) || !is_floating(scale.dtype))
    e.error(ErrorCode::kTypeError, "X and scale have dtypes ", dtype_name(x.dtype), " and ", dtype_name(scale.dtype),
            "; expected float types");
  int64_t axis = node.attrs.get_int("axis", -1);
  if (axis < -x.rank() || axis >= x.rank())
    e.error(ErrorCode::kInvalidModel, "axis ", axis, " is out of range for X of rank ", x.rank());
  if (axis < 0) axis += x.rank();
  int64_t stash_code = node.attrs.get_int("stash_type", ::onnx::TensorProto::FLOAT);
  std::optional<DType> stash = dtype_from_onnx(int32_t(stash_code));
  if (!stash || !is_floating(*stash))
    e.error(ErrorCode::kInvalidModel, "stash_type ", stash_code, " is not FLOAT (1), FLOAT16 (10), DOUBLE (11) or BFLOAT16 (16)");
  std::vector<int64_t> axes;
  for (int64_t i = axis; i < x.rank(); ++i) axes.push_back(i);
  ValueId xs = e.cast(x.id, x.dtype, *stash, "x_stash");
  ValueId square_mean = e.op(OpKind::kReduceMean, {e.op(OpKind::kMul, {xs, xs}, "square"), e.ints("axes", axes)}, "mean_square",
                             attrs({{"keepdims", int64_t(1)}}));
  ValueId epsilon = e.scalar("epsilon", node.attrs.get_float("epsilon", 1e-5), *stash);
  ValueId rms = e.op(OpKind::kSqrt, {e.op(OpKind::kAdd, {square_mean, epsilon}, "mean_square_eps")}, "rms");
  ValueId normalized = e.cast(e.op(OpKind::kDiv, {xs, rms}, "normalized"), *stash, scale.dtype, "normalized_cast");
  e.op(OpKind::kMul, {normalized, scale.id}, "scaled", {}, e.output(0));
}

// RotaryEmbedding-23: rotates pairs of each head's first rotary_embedding_dim
// elements (its two halves, or with interleaved its even and odd elements) by
// the angles whose cosines and sines the caches hold (rows picked by
// position_ids when given).
void translate_rotary_embedding(GraphBuilder& b, const ir::Node& node, const std::string& where) {
  Expansion e(b, node, "RotaryEmbedding", where);
  e.check_attributes({"interleaved", "num_heads", "rotary_embedding_dim"}, 23);
  Typed x = e.input_of_rank(0, "X", {3, 4});
  Typed cos = e.input(1, "cos_cache"), sin = e.input(2, "sin_cache");
  if (!is_floating(x.dtype) || cos.dtype != x.dtype || sin.dtype != x.dtype)
    e.error(ErrorCode::kTypeError, "X, cos_cache and sin_cache have dtypes ", dtype_name(x.dtype), ", ", dtype_name(cos.dtype),
            " and ", dtype_name(sin.dtype), "; expected one float type");
  const bool three_d = x.rank() == 3;
  int64_t heads = node.attrs.get_int("num_heads", 0);
  if (three_d && heads < 1) e.error(ErrorCode::kInvalidModel, "a 3-D input needs num_heads >= 1");
  int64_t rotary_dim = node.attrs.get_int("rotary_embedding_dim", 0);
  if (rotary_dim < 0 || rotary_dim % 2 != 0)
    e.error(ErrorCode::kInvalidModel, "rotary_embedding_dim ", rotary_dim, " is not an even number >= 0");
  bool interleaved = node.attrs.get_int("interleaved", 0) != 0;

  // x as [B, H, S, D] (4-D input) or [B, S, H, D] (3-D); the caches as [B, S, R/2]
  // broadcast over the heads' axis (1 or 2).
  ValueId xh = three_d ? e.op(OpKind::kReshape, {x.id, e.ints("heads_shape", {0, 0, heads, -1})}, "heads") : x.id;
  int64_t heads_axis = three_d ? 2 : 1;
  auto cache = [&](const Typed& c, const std::string& part) {
    ValueId rows = c.id;
    if (e.has(3)) rows = e.op(OpKind::kGather, {c.id, node.inputs[3]}, str(part, "_rows"), attrs({{"axis", int64_t(0)}}));
    return e.op(OpKind::kUnsqueeze, {rows, e.ints(str(part, "_axis"), {heads_axis})}, part);
  };
  ValueId c = cache(cos, "cos"), s = cache(sin, "sin");
  ValueId rotated = xh, passed = ir::kNoValue;
  ir::Attributes last = attrs({{"axis", int64_t(-1)}});
  if (rotary_dim > 0) {  // the first rotary_dim elements turn, the rest pass
    ValueId last_axis = e.ints("last_axis", {-1});
    rotated = e.op(OpKind::kSlice, {xh, e.ints("rotary_start", {0}), e.ints("rotary_end", {rotary_dim}), last_axis}, "rotary_part");
    passed = e.op(OpKind::kSlice, {xh, e.ints("pass_start", {rotary_dim}), e.ints("pass_end", {std::numeric_limits<int64_t>::max()}),
                                   last_axis},
                  "pass_part");
  }
  ValueId x1, x2;
  if (interleaved) {
    ValueId end = e.ints("pairs_end", {std::numeric_limits<int64_t>::max()}), axis = e.ints("pairs_axis", {-1});
    ValueId step = e.ints("pairs_step", {2});
    x1 = e.op(OpKind::kSlice, {rotated, e.ints("even_start", {0}), end, axis, step}, "even");
    x2 = e.op(OpKind::kSlice, {rotated, e.ints("odd_start", {1}), end, axis, step}, "odd");
  } else {
    std::vector<ValueId> halves = b.net().add_op(OpKind::kSplit, {rotated}, attrs({{"axis", int64_t(-1)}, {"num_outputs", int64_t(2)}}),
                                                 2, node.name + "/halves");
    x1 = halves[0];
    x2 = halves[1];
  }
  ValueId real = e.op(OpKind::kSub, {e.op(OpKind::kMul, {c, x1}, "cos_x1"), e.op(OpKind::kMul, {s, x2}, "sin_x2")}, "real");
  ValueId imag = e.op(OpKind::kAdd, {e.op(OpKind::kMul, {s, x1}, "sin_x1"), e.op(OpKind::kMul, {c, x2}, "cos_x2")}, "imag");
  // The last op writes Y, except for a 3-D input whose heads are merged after.
  ValueId y = three_d ? ir::kNoValue : e.output(0);
  ValueId turned_out = passed == ir::kNoValue ? y : ir::kNoValue;
  ValueId turned;
  if (interleaved) {  // (real, imag) pairs back in place: [.., R/2, 2] -> [.., R]
    ValueId pair_axis = e.ints("pair_axis", {-1});
    ValueId pairs = e.op(OpKind::kConcat, {e.op(OpKind::kUnsqueeze, {real, pair_axis}, "real_pair"),
                                           e.op(OpKind::kUnsqueeze, {imag, pair_axis}, "imag_pair")},
                         "pairs", last);
    turned = e.op(OpKind::kReshape, {pairs, e.ints("pairs_shape", {0, 0, 0, -1})}, "turned", {}, turned_out);
  } else {
    turned = e.op(OpKind::kConcat, {real, imag}, "turned", last, turned_out);
  }
  ValueId out = passed == ir::kNoValue ? turned : e.op(OpKind::kConcat, {turned, passed}, "with_pass", last, y);
  if (three_d) e.op(OpKind::kReshape, {out, e.ints("merged_shape", {0, 0, -1})}, "merged", {}, e.output(0));
}

// Swish-24: x * sigmoid(alpha * x); SwiGLU-28: Swish(A) * B; Mish-18:
// x * tanh(softplus(x)). Elementwise ops that `kiln build` fuses into one kernel.
void translate_swish_family(GraphBuilder& b, const ir::Node& node, const std::string& type, const std::string& where) {
  Expansion e(b, node, type, where);
  int version = onnx_op_version(type, b.opset());
  bool gated = type == "SwiGLU";
  Typed x = e.input(0, gated ? "A" : "X");
  if (!is_floating(x.dtype)) e.error(ErrorCode::kTypeError, "input 0 has dtype ", dtype_name(x.dtype), "; expected a float type");
  if (type == "Mish") {
    e.check_attributes({}, version);
    ValueId tanh = e.op(OpKind::kTanh, {e.op(OpKind::kSoftplus, {x.id}, "softplus")}, "tanh");
    e.op(OpKind::kMul, {x.id, tanh}, "mish", {}, e.output(0));
    return;
  }
  e.check_attributes({"alpha"}, version);
  double alpha = node.attrs.get_float("alpha", 1.0);
  ValueId scaled = alpha == 1.0 ? x.id : e.op(OpKind::kMul, {x.id, e.scalar("alpha", alpha, x.dtype)}, "scaled");
  ValueId swish = e.op(OpKind::kMul, {x.id, e.op(OpKind::kSigmoid, {scaled}, "sigmoid")}, "swish", {},
                       gated ? ir::kNoValue : e.output(0));
  if (gated) e.op(OpKind::kMul, {swish, e.input(1, "B").id}, "gated", {}, e.output(0));
}

// GroupNormalization-18 scales and shifts per group; 21 per channel, which
// kiln's op does: each group's scale and bias repeated over its channels.
void translate_group_normalization_18(GraphBuilder& b, ir::Node node, const std::string& where) {
  Expansion e(b, node, "GroupNormalization", where);
  e.check_attributes({"epsilon", "num_groups"}, 18);
  Typed x = e.input(0, "X");
  e.input_of_rank(1, "scale", {1});
  e.input_of_rank(2, "bias", {1});
  if (x.rank() < 2) e.error(ErrorCode::kShapeError, "X has shape ", ir::shape_to_string(x.shape), "; expected [N, C, ...]");
  int64_t groups = node.attrs.get_int("num_groups", 0);
  if (groups < 1) e.error(ErrorCode::kInvalidModel, "num_groups must be >= 1");
  const Dim& channels = x.shape[1];
  ValueId per_group;  // channels / groups, as [1, n]
  if (channels.is_constant()) {
    if (channels.constant() % groups != 0)
      e.error(ErrorCode::kShapeError, channels.constant(), " channels do not split into ", groups, " groups");
    per_group = e.ints("per_group", {1, channels.constant() / groups});
  } else {
    ValueId n = e.op(OpKind::kDiv, {e.dims("channels", x, 1, 2), e.ints("groups", {groups})}, "channels_per_group");
    per_group = e.op(OpKind::kConcat, {e.ints("one", {1}), n}, "per_group", attrs({{"axis", int64_t(0)}}));
  }
  for (size_t i : {size_t(1), size_t(2)}) {
    const char* part = i == 1 ? "scale" : "bias";
    ValueId column = e.op(OpKind::kUnsqueeze, {node.inputs[i], e.ints(str(part, "_axis"), {1})}, str(part, "_column"));
    ValueId grid = e.op(OpKind::kExpand, {column, per_group}, str(part, "_grid"));
    node.inputs[i] = e.op(OpKind::kReshape, {grid, e.ints(str(part, "_shape"), {-1})}, str(part, "_per_channel"));
  }
  b.net().add_node(std::move(node));
}

// SpaceToDepth-28 with mode CRD: out channel c * b * b + by * b + bx, through
// [N, C, H/b, b, W/b, b] transposed to [N, C, b, b, H/b, W/b].
void translate_space_to_depth_crd(GraphBuilder& b, const ir::Node& node, const std::string& where) {
  Expansion e(b, node, "SpaceToDepth", where);
  e.check_attributes({"blocksize", "mode"}, 28);
  Typed x = e.input_of_rank(0, "input", {4});
  int64_t block = node.attrs.get_int("blocksize", 0);
  if (block < 1) e.error(ErrorCode::kInvalidModel, "blocksize must be >= 1");
  for (size_t i : {size_t(2), size_t(3)})
    if (x.shape[i].is_constant() && x.shape[i].constant() % block != 0)
      e.error(ErrorCode::kShapeError, "spatial dim ", x.shape[i].constant(), " is not divisible by blocksize ", block);
  ValueId blocks = e.op(OpKind::kDiv, {e.dims("spatial", x, 2, 4), e.ints("block", {block})}, "blocks");  // [H/b, W/b]
  auto part_of = [&](int64_t i, const std::string& name) {
    return e.op(OpKind::kSlice, {blocks, e.ints(str(name, "_start"), {i}), e.ints(str(name, "_end"), {i + 1})}, name);
  };
  ValueId b_dim = e.ints("block_dim", {block});
  ValueId split_shape = e.op(OpKind::kConcat, {e.dims("nc", x, 0, 2), part_of(0, "h_blocks"), b_dim, part_of(1, "w_blocks"), b_dim},
                             "split_shape", attrs({{"axis", int64_t(0)}}));
  ValueId split = e.op(OpKind::kReshape, {x.id, split_shape}, "split");
  ValueId moved = e.op(OpKind::kTranspose, {split}, "moved", attrs({{"perm", std::vector<int64_t>{0, 1, 3, 5, 2, 4}}}));
  ValueId out_shape = e.op(OpKind::kConcat, {e.ints("n_depth", {0, -1}), blocks}, "out_shape", attrs({{"axis", int64_t(0)}}));
  e.op(OpKind::kReshape, {moved, out_shape}, "out", {}, e.output(0));
}

// CenterCropPad-18: each axis cut about its centre (a Slice) or zero-padded
// about it (a Pad) to the length the shape input gives, the odd element of
// the difference at the end. Starts and pads are shape arithmetic: constants
// when the input's dims and the shape are.
void translate_center_crop_pad(GraphBuilder& b, const ir::Node& node, const std::string& where) {
  Expansion e(b, node, "CenterCropPad", where);
  e.check_attributes({"axes"}, 18);
  Typed x = e.input(0, "input_data"), shape = e.input_of_rank(1, "shape", {1});
  if (shape.dtype != DType::kInt64 && shape.dtype != DType::kInt32)
    e.error(ErrorCode::kTypeError, "input 1 (shape) has dtype ", dtype_name(shape.dtype), "; expected int32 or int64");
  std::vector<int64_t> axes(size_t(x.rank()));
  for (size_t i = 0; i < axes.size(); ++i) axes[i] = int64_t(i);
  axes = node.attrs.get_ints("axes", axes);
  std::vector<bool> seen(size_t(x.rank()), false);
  for (int64_t& a : axes) {
    if (a < -x.rank() || a >= x.rank()) e.error(ErrorCode::kInvalidModel, "axis ", a, " is out of range for rank ", x.rank());
    a = a < 0 ? a + x.rank() : a;
    if (seen[size_t(a)]) e.error(ErrorCode::kInvalidModel, "axis ", a, " appears twice in axes");
    seen[size_t(a)] = true;
  }
  const Dim& count = shape.shape[0];
  if (count.is_constant() && count.constant() != int64_t(axes.size()))
    e.error(ErrorCode::kShapeError, "input 1 (shape) has ", count.constant(), " entries for ", axes.size(), " axes");
  std::vector<ValueId> parts;
  for (int64_t a : axes) parts.push_back(e.dims(str("dim", a), x, a, a + 1));
  ValueId dims = parts.size() == 1 ? parts[0] : e.op(OpKind::kConcat, parts, "dims", attrs({{"axis", int64_t(0)}}));
  ValueId target = e.cast(shape.id, shape.dtype, DType::kInt64, "target");
  ValueId zero = e.ints("zero", {0}), two = e.ints("two", {2}), axes_id = e.ints("axes", axes);
  ValueId excess = e.op(OpKind::kMax, {e.op(OpKind::kSub, {dims, target}, "difference"), zero}, "excess");
  ValueId start = e.op(OpKind::kDiv, {excess, two}, "crop_start");
  ValueId end = e.op(OpKind::kAdd, {start, e.op(OpKind::kMin, {dims, target}, "kept")}, "crop_end");
  ValueId cropped = e.op(OpKind::kSlice, {x.id, start, end, axes_id}, "cropped");
  ValueId missing = e.op(OpKind::kMax, {e.op(OpKind::kSub, {target, dims}, "shortfall"), zero}, "missing");
  ValueId before = e.op(OpKind::kDiv, {missing, two}, "pad_before");
  ValueId pads = e.op(OpKind::kConcat, {before, e.op(OpKind::kSub, {missing, before}, "pad_after")}, "pads",
                      attrs({{"axis", int64_t(0)}}));
  e.op(OpKind::kPad, {cropped, pads, ir::kNoValue, axes_id}, "out", {}, e.output(0));
}

// DynamicQuantizeLinear-11 as its ONNX function body: the range of x widened
// to hold 0, the uint8 scale (range / 255) and zero point (0 - min / scale,
// clipped to [0, 255] and rounded), then QuantizeLinear with them.
void translate_dynamic_quantize_linear(GraphBuilder& b, const ir::Node& node, const std::string& where) {
  Expansion e(b, node, "DynamicQuantizeLinear", where);
  e.check_attributes({}, 11);
  Typed x = e.input(0, "x");
  if (x.dtype != DType::kFloat32) e.error(ErrorCode::kTypeError, "input 0 has dtype ", dtype_name(x.dtype), "; expected float32");
  ValueId q_min = e.scalar("q_min", 0.0, DType::kFloat32), q_max = e.scalar("q_max", 255.0, DType::kFloat32);
  ir::Attributes all = attrs({{"keepdims", int64_t(0)}});
  ValueId x_min = e.op(OpKind::kMin, {e.op(OpKind::kReduceMin, {x.id}, "x_min", all), q_min}, "x_min_adjusted");
  ValueId x_max = e.op(OpKind::kMax, {e.op(OpKind::kReduceMax, {x.id}, "x_max", all), q_min}, "x_max_adjusted");
  ValueId scale = e.op(OpKind::kDiv, {e.op(OpKind::kSub, {x_max, x_min}, "x_range"), q_max}, "scale", {}, e.output(1));
  ValueId zero_fp = e.op(OpKind::kSub, {q_min, e.op(OpKind::kDiv, {x_min, scale}, "min_scaled")}, "initial_zero_point");
  ValueId rounded = e.op(OpKind::kRound, {e.op(OpKind::kClip, {zero_fp, q_min, q_max}, "clipped_zero_point")}, "rounded_zero_point");
  ValueId zero = e.op(OpKind::kCast, {rounded}, "zero_point", attrs({{"to", int64_t(DType::kUInt8)}}), e.output(2));
  e.op(OpKind::kQuantizeLinear, {x.id, scale, zero}, "quantize", {}, e.output(0));
}

// MeanVarianceNormalization (9, 13), as its function body: (X - E[X]) /
// (sqrt(E[X^2] - E[X]^2) + 1e-9), the means over `axes` (default 0, 2, 3).
void translate_mean_variance_normalization(GraphBuilder& b, const ir::Node& node, const std::string& where) {
  Expansion e(b, node, "MeanVarianceNormalization", where);
  e.check_attributes({"axes"}, onnx_op_version("MeanVarianceNormalization", b.opset()));
  Typed x = e.input(0, "X");
  if (!is_floating(x.dtype)) e.error(ErrorCode::kTypeError, "input 0 has dtype ", dtype_name(x.dtype), "; expected a float type");
  std::vector<int64_t> axes = node.attrs.get_ints("axes", {0, 2, 3});
  for (int64_t a : axes)
    if (a < -x.rank() || a >= x.rank()) e.error(ErrorCode::kInvalidModel, "axis ", a, " is out of range for X of rank ", x.rank());
  ValueId axes_id = e.ints("axes", axes);
  ir::Attributes keep = attrs({{"keepdims", int64_t(1)}});
  ValueId mean = e.op(OpKind::kReduceMean, {x.id, axes_id}, "mean", keep);
  ValueId mean_square = e.op(OpKind::kReduceMean, {e.op(OpKind::kMul, {x.id, x.id}, "square"), axes_id}, "mean_square", keep);
  ValueId variance = e.op(OpKind::kSub, {mean_square, e.op(OpKind::kMul, {mean, mean}, "mean_squared")}, "variance");
  ValueId deviation = e.op(OpKind::kAdd, {e.op(OpKind::kSqrt, {variance}, "std"), e.scalar("epsilon", 1e-9, x.dtype)}, "std_eps");
  e.op(OpKind::kDiv, {e.op(OpKind::kSub, {x.id, mean}, "centered"), deviation}, "normalized", {}, e.output(0));
}

}  // namespace kiln::onnx

namespace kiln::onnx {

namespace {

// A FlexAttention modifier (score_mod, prob_mod): its nodes translated into
// this graph on `x`, its names prefixed by `prefix` (those it reads from the
// enclosing graph kept), its initializers made weights. Returns its output.
ValueId inline_modifier(GraphBuilder& b, const ::onnx::GraphProto& graph, ValueId x, const std::string& prefix,
                        const std::string& where) {
  std::string what = str(where, ": ", prefix);
  if (graph.input_size() != 1 || graph.output_size() != 1)
    fail(ErrorCode::kInvalidModel, what, " has ", graph.input_size(), " inputs and ", graph.output_size(),
         " outputs; a modifier takes one tensor and makes one");
  std::map<std::string, std::string> renamed{{graph.input(0).name(), b.net().value(x).name}};
  auto name_of = [&](const std::string& n) {
    auto it = renamed.find(n);
    return it == renamed.end() ? n : it->second;  // not made here: the enclosing graph's
  };
  for (const auto& init : graph.initializer()) {
    ::onnx::TensorProto copy = init;
    renamed[init.name()] = prefix + init.name();
    b.net().add_weight(prefix + init.name(), tensor_from_proto(copy, b.base_dir()));
  }
  for (int i = 0; i < graph.node_size(); ++i) {
    ::onnx::NodeProto node = graph.node(i);
    if (!node.domain().empty() && node.domain() != "ai.onnx")
      fail(ErrorCode::kUnsupported, what, ": op ", node.domain(), "::", node.op_type(), " in a modifier is not supported");
    for (const auto& a : node.attribute())
      if (a.has_g() || a.graphs_size())
        fail(ErrorCode::kUnsupported, what, ": node '", node.name(), "' (", node.op_type(), ") has a subgraph; modifiers with "
             "control flow are not supported");
    for (auto& in : *node.mutable_input()) in = in.empty() ? in : name_of(in);
    for (auto& out : *node.mutable_output())
      if (!out.empty()) out = renamed[out] = prefix + out;
    node.set_name(prefix + (node.name().empty() ? str(node.op_type(), "_", i) : node.name()));
    translate_node(b, node, i);
  }
  return b.value(name_of(graph.output(0).name()));
}

}  // namespace

// ai.onnx.preview FlexAttention-1: Y = softmax(score_mod((Q s)(K s)^T)) then
// prob_mod, times V, with s = sqrt(scale) in Q's type (ONNX's reference
// scales both operands), the softmax and what follows in softmax_precision
// (float32 for float inputs up to 32 bits, float64 for float64), Y cast back
// to V's type; grouped-query heads by repeating K and V.
void translate_flex_attention(GraphBuilder& b, ::onnx::NodeProto& p, const std::string& name, const std::string& where) {
  ir::Node node;
  node.name = name;
  const ::onnx::GraphProto *score_mod = nullptr, *prob_mod = nullptr;
  for (const auto& a : p.attribute()) {
    if (a.name() == "score_mod" && a.has_g()) score_mod = &a.g();
    else if (a.name() == "prob_mod" && a.has_g()) prob_mod = &a.g();
    else if (a.name() == "scale") node.attrs.set("scale", double(a.f()));
    else if (a.name() == "softmax_precision") node.attrs.set("softmax_precision", int64_t(a.i()));
    else fail(ErrorCode::kUnsupported, where, ": attribute '", a.name(), "' is not one of FlexAttention-1's");
  }
  for (const auto& in : p.input()) node.inputs.push_back(b.value(in));
  for (const auto& out : p.output()) node.outputs.push_back(out.empty() ? ir::kNoValue : b.value(out));
  Expansion e(b, node, "FlexAttention", where);
  if (node.inputs.size() != 3 || node.outputs.size() != 1)
    e.error(ErrorCode::kInvalidModel, "FlexAttention takes Q, K and V and makes Y");
  Typed q = e.input_of_rank(0, "Q", {4}), k = e.input_of_rank(1, "K", {4}), v = e.input_of_rank(2, "V", {4});
  const DType t = q.dtype;
  if (!is_floating(t)) e.error(ErrorCode::kTypeError, "Q has dtype ", dtype_name(t), "; expected a float type");
  if (k.dtype != t || v.dtype != t)
    e.error(ErrorCode::kTypeError, "K and V have dtypes ", dtype_name(k.dtype), " and ", dtype_name(v.dtype), "; Q's is ", dtype_name(t));
  DType compute = t == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32;
  if (node.attrs.has("softmax_precision")) {
    auto chosen = dtype_from_onnx(int32_t(node.attrs.get_int("softmax_precision", 0)));
    if (!chosen || !is_floating(*chosen))
      e.error(ErrorCode::kInvalidModel, "softmax_precision ", node.attrs.get_int("softmax_precision", 0),
              " is not a float type (FLOAT, FLOAT16, BFLOAT16 or DOUBLE)");
    compute = *chosen;
  }
  double scale = 0;
  if (node.attrs.has("scale")) {
    scale = node.attrs.get_float("scale", 1.0);
  } else {
    if (!q.shape[3].is_constant())
      e.error(ErrorCode::kUnsupported, "a head size known at run time only (", q.shape[3].to_string(), ") without a scale attribute");
    scale = 1.0 / std::sqrt(double(q.shape[3].constant()));
  }
  ValueId root = e.scalar("sqrt_scale", double(std::sqrt(float(scale))), t);
  ValueId keys = repeat_kv_heads(e, k, q, "k_rep"), values = repeat_kv_heads(e, v, q, "v_rep");
  ValueId qs = e.op(OpKind::kMul, {q.id, root}, "q_scaled"), ks = e.op(OpKind::kMul, {keys, root}, "k_scaled");
  ValueId kt = e.op(OpKind::kTranspose, {ks}, "k_transposed", attrs({{"perm", std::vector<int64_t>{0, 1, 3, 2}}}));
  ValueId scores = e.cast(e.op(OpKind::kMatMul, {qs, kt}, "scores"), t, compute, "scores_cast");
  if (score_mod) scores = inline_modifier(b, *score_mod, scores, str(name, "/score_mod/"), where);
  ValueId probs = e.op(OpKind::kSoftmax, {scores}, "probs", attrs({{"axis", int64_t(-1)}}));
  if (prob_mod) probs = inline_modifier(b, *prob_mod, probs, str(name, "/prob_mod/"), where);
  ValueId y = e.op(OpKind::kMatMul, {probs, e.cast(values, t, compute, "v_cast")}, compute == t ? "y" : "y_wide", {},
                   compute == t ? e.output(0) : ir::kNoValue);
  if (compute != t) e.op(OpKind::kCast, {y}, "y", attrs({{"to", int64_t(t)}}), e.output(0));
}

}  // namespace kiln::onnx
