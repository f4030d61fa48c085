// The recurrent family: RNN, GRU and LSTM, one layer each over a sequence,
// forward, reverse or both ways, with ONNX's optional inputs (B,
// sequence_lens, initial_h, initial_c, P) and outputs (Y, Y_h, Y_c).
#include <cctype>
#include <cmath>

#include "family.h"
#include "kiln/ir/recurrent.h"

namespace kiln::ir {

namespace {

using K = RecurrentActivationKind;

struct ActivationName {
  const char* name;
  K kind;
  int parameters;  // how many of alpha, beta the function takes
  double alpha, beta;  // the defaults of the ONNX operator of that name
};

constexpr ActivationName kActivations[] = {
    {"relu", K::kRelu, 0, 0, 0},          {"tanh", K::kTanh, 0, 0, 0},
    {"sigmoid", K::kSigmoid, 0, 0, 0},    {"affine", K::kAffine, 2, 1.0, 0.0},
    {"leakyrelu", K::kLeakyRelu, 1, 0.01, 0}, {"thresholdedrelu", K::kThresholdedRelu, 1, 1.0, 0},
    {"scaledtanh", K::kScaledTanh, 2, 1.0, 1.0}, {"hardsigmoid", K::kHardSigmoid, 2, 0.2, 0.5},
    {"elu", K::kElu, 1, 1.0, 0},          {"softsign", K::kSoftsign, 0, 0, 0},
    {"softplus", K::kSoftplus, 0, 0, 0},
};

std::string lower(std::string s) {
  for (char& ch : s) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

// Input slots of the ONNX ops.
enum Slot : size_t { kX = 0, kW, kR, kB, kSequenceLens, kInitialH, kInitialC, kP };

void infer_recurrent_layer(Ctx& c) {
  OpKind op = c.node().op;
  RecurrentSetup s = recurrent_setup(c.node());
  for (size_t i : {kX, kW, kR, kB, kInitialH, kInitialC, kP}) {
    if (!c.has(i)) continue;
    c.require_float(i);
    c.require_same_dtype(kX, i);
  }
  if (c.has(kSequenceLens)) c.require_dtype(kSequenceLens, {DType::kInt32});
  c.require_rank(kX, 3, 3);
  c.require_rank(kW, 3, 3);
  c.require_rank(kR, 3, 3);
  const Shape &x = c.shape(kX), &r = c.shape(kR);
  Dim seq = s.batch_first ? x[1] : x[0], batch = s.batch_first ? x[0] : x[1];
  Dim hidden = r[2];
  if (c.attrs().has("hidden_size")) {
    int64_t h = c.attrs().get_int("hidden_size", 0);
    if (h < 1) c.error(ErrorCode::kInvalidModel, "hidden_size ", h, " must be >= 1");
    check_equal_dims(c, hidden, Dim(h), "hidden_size and the last dim of R");
    hidden = Dim(h);
  }
  Dim rows = Dim(s.gates) * hidden;
  auto expect = [&](size_t i, const Shape& want) {
    const Shape& got = c.shape(i);
    bool ok = got.size() == want.size();
    for (size_t d = 0; ok && d < got.size(); ++d)
      ok = !(got[d].is_constant() && want[d].is_constant() && got[d] != want[d]);
    if (!ok)
      c.error(ErrorCode::kShapeError, c.input_name(i), " has shape ", shape_to_string(got), "; expected ", shape_to_string(want),
              " (", s.directions, s.directions == 1 ? " direction, " : " directions, ", s.gates, s.gates == 1 ? " gate" : " gates",
              ", hidden size ", hidden.to_string(), ")");
  };
  expect(kW, {Dim(s.directions), rows, x[2]});
  expect(kR, {Dim(s.directions), rows, hidden});
  if (c.has(kB)) expect(kB, {Dim(s.directions), Dim(2) * rows});
  if (c.has(kSequenceLens)) expect(kSequenceLens, {batch});
  Shape state = s.batch_first ? Shape{batch, Dim(s.directions), hidden} : Shape{Dim(s.directions), batch, hidden};
  if (c.has(kInitialH)) expect(kInitialH, state);
  if (op == OpKind::kLSTM) {
    if (c.has(kInitialC)) expect(kInitialC, state);
    if (c.has(kP)) expect(kP, {Dim(s.directions), Dim(3) * hidden});
  }
  DType t = c.dtype(kX);
  size_t outputs = recurrent_outputs(op);
  c.set(0, t, s.batch_first ? Shape{batch, seq, Dim(s.directions), hidden} : Shape{seq, Dim(s.directions), batch, hidden});
  c.set(1, t, state);
  if (op == OpKind::kLSTM) c.set(2, t, state);
  if (c.num_outputs() > outputs) c.set(outputs, DType::kFloat32, {recurrent_scratch<Dim>(op, s, seq, batch, hidden).total});
}

}  // namespace

int64_t recurrent_functions(OpKind op) { return op == OpKind::kRNN ? 1 : op == OpKind::kGRU ? 2 : 3; }

RecurrentSetup recurrent_setup(const Node& node) {
  auto where = [&] { return str("node '", node.name, "' (", op_name(node.op), "): "); };
  const Attributes& a = node.attrs;
  RecurrentSetup s;
  s.gates = node.op == OpKind::kRNN ? 1 : node.op == OpKind::kGRU ? 3 : 4;
  std::string direction = a.get_string("direction", "forward");
  if (direction != "forward" && direction != "reverse" && direction != "bidirectional")
    fail(ErrorCode::kInvalidModel, where(), "direction '", direction, "' is not one of forward, reverse, bidirectional");
  s.directions = direction == "bidirectional" ? 2 : 1;
  s.reverse = direction == "reverse";
  int64_t layout = a.get_int("layout", 0);
  if (layout != 0 && layout != 1) fail(ErrorCode::kInvalidModel, where(), "layout ", layout, " is not 0 or 1");
  s.batch_first = layout == 1;
  for (const char* flag : {"linear_before_reset", "input_forget"}) {
    int64_t v = a.get_int(flag, 0);
    if (v != 0 && v != 1) fail(ErrorCode::kInvalidModel, where(), flag, " ", v, " is not 0 or 1");
  }
  s.linear_before_reset = a.get_int("linear_before_reset", 0) != 0;
  s.input_forget = a.get_int("input_forget", 0) != 0;
  if (a.has("clip")) {
    double clip = a.get_float("clip", 0);
    if (!(clip > 0)) fail(ErrorCode::kInvalidModel, where(), "clip ", clip, " must be > 0");
    s.clip = clip;
  }

  int64_t functions = recurrent_functions(node.op);
  std::vector<std::string> names = a.get_strings("activations");
  if (names.empty()) {
    if (node.op == OpKind::kRNN) names = {"Tanh"};
    else if (node.op == OpKind::kGRU) names = {"Sigmoid", "Tanh"};
    else names = {"Sigmoid", "Tanh", "Tanh"};
  }
  // One list serves both directions; RNN's schema default lists Tanh twice for one direction.
  int64_t needed = functions * s.directions;
  if (int64_t(names.size()) == functions && s.directions == 2) {
    std::vector<std::string> once = names;
    names.insert(names.end(), once.begin(), once.end());
  }
  if (int64_t(names.size()) < needed || (int64_t(names.size()) > needed && !(node.op == OpKind::kRNN && names.size() == 2)))
    fail(ErrorCode::kInvalidModel, where(), "activations has ", names.size(), " entries; expected ", functions,
         functions == 1 ? " function" : " functions", " per direction (", needed, " for ", s.directions,
         s.directions == 1 ? " direction)" : " directions)");
  std::vector<double> alphas = a.get_floats("activation_alpha"), betas = a.get_floats("activation_beta");
  size_t next_alpha = 0, next_beta = 0;
  s.activations.assign(size_t(s.directions), {});
  for (int64_t i = 0; i < needed; ++i) {
    std::string name = lower(names[size_t(i)]);
    const ActivationName* found = nullptr;
    for (const ActivationName& n : kActivations)
      if (name == n.name) found = &n;
    if (!found)
      fail(ErrorCode::kInvalidModel, where(), "activation '", names[size_t(i)], "' is not one of Relu, Tanh, Sigmoid, Affine, ",
           "LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus");
    RecurrentActivation act{found->kind, found->alpha, found->beta};
    if (found->parameters >= 1 && next_alpha < alphas.size()) act.alpha = alphas[next_alpha++];
    if (found->parameters >= 2 && next_beta < betas.size()) act.beta = betas[next_beta++];
    s.activations[size_t(i / functions)].push_back(act);
  }
  return s;
}

double apply_recurrent_activation(const RecurrentActivation& a, double x) {
  switch (a.kind) {
    case K::kRelu: return x > 0 ? x : 0;
    case K::kTanh: return std::tanh(x);
    case K::kSigmoid: return 1 / (1 + std::exp(-x));
    case K::kAffine: return a.alpha * x + a.beta;
    case K::kLeakyRelu: return x >= 0 ? x : a.alpha * x;
    case K::kThresholdedRelu: return x > a.alpha ? x : 0;
    case K::kScaledTanh: return a.alpha * std::tanh(a.beta * x);
    case K::kHardSigmoid: return std::min(std::max(a.alpha * x + a.beta, 0.0), 1.0);
    case K::kElu: return x >= 0 ? x : a.alpha * (std::exp(x) - 1);
    case K::kSoftsign: return x / (1 + std::fabs(x));
    case K::kSoftplus: return std::log1p(std::exp(-std::fabs(x))) + std::max(x, 0.0);
  }
  return x;
}

OpSchema recurrent_schema(OpKind op) {
  using T = AttrType;
  std::vector<AttrSpec> common = {{"activation_alpha", T::kFloats}, {"activation_beta", T::kFloats}, {"activations", T::kStrings},
                                  {"clip", T::kFloat},              {"direction", T::kString},        {"hidden_size", T::kInt},
                                  {"layout", T::kInt}};
  // Outputs Y, Y_h (, Y_c), each optional; one more where `kiln build` adds the GPU runtime's scratch.
  switch (op) {
    case OpKind::kRNN: return {3, 6, 0, 3, common};
    case OpKind::kGRU:
      common.push_back({"linear_before_reset", T::kInt});
      return {3, 6, 0, 3, common};
    case OpKind::kLSTM:
      common.push_back({"input_forget", T::kInt});
      return {3, 8, 0, 4, common};
    default: return {0, 0, 0, 0, {}, false};
  }
}

void infer_recurrent(Ctx& c) {
  switch (c.node().op) {
    case OpKind::kRNN:
    case OpKind::kGRU:
    case OpKind::kLSTM: infer_recurrent_layer(c); break;
    default: no_inference(c);
  }
}

}  // namespace kiln::ir
