// The GPU kernels of RNN, GRU (both reset orders) and LSTM (peepholes,
// input_forget, clip) against the reference interpreter on seeded random
// non-zero data, in models of float32, float16 and bfloat16, with the generic
// kernels and with shape-specialized ones: every direction, both layouts,
// sequence_lens (lengths from 0 to the sequence's, and out of range, which
// the GPU clamps), hidden sizes 1, 7, 33 and 257, batches 1 and 5, sequences
// of 0, 1, 9 and 300 steps, and nodes with only some of their outputs.
#include "gpu_test_util.h"
#include "kiln/error.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;
using S = runtime::KernelSpecialization;

// Relative to each output's largest magnitude: float32 sums against float64
// over up to 300 steps, then the output's rounding.
double tolerance(DType dtype) { return dtype == DType::kFloat32 ? 1e-4 : dtype == DType::kFloat16 ? 4e-3 : 3e-2; }

int64_t gates(OpKind op) { return op == OpKind::kRNN ? 1 : op == OpKind::kGRU ? 3 : 4; }

struct Shape3 {
  int64_t seq, batch, input, hidden;
};

// One network of every recurrent op over one X, and its inputs.
class Layers {
 public:
  Layers(DType dtype, Shape3 s, bool batch_first, uint32_t seed) : dtype_(dtype), s_(s), batch_first_(batch_first), rng_(seed) {
    std::vector<int64_t> x = batch_first ? std::vector<int64_t>{s.batch, s.seq, s.input} : std::vector<int64_t>{s.seq, s.batch, s.input};
    x_ = input("X", dtype, x);
  }

  // A layer reading X; `lens` the batch rows' lengths (none: absent), `outputs` which of Y, Y_h, Y_c to keep.
  void add(OpKind op, const std::string& direction, ir::Attributes a, std::optional<std::vector<double>> lens, std::vector<bool> outputs,
           bool initial_states = true, bool bias = true) {
    int64_t dirs = direction == "bidirectional" ? 2 : 1, rows = gates(op) * s_.hidden;
    // Weights scaled by 1/sqrt(fan-in) keep the gates off saturation at every hidden size.
    double w = 1 / std::sqrt(double(std::max<int64_t>(s_.input, 1))), r = 1 / std::sqrt(double(s_.hidden));
    std::string p = str("l", layers_++, "_");
    std::vector<ValueId> in{x_, weight(p + "W", {dirs, rows, s_.input}, w), weight(p + "R", {dirs, rows, s_.hidden}, r)};
    in.push_back(bias ? weight(p + "B", {dirs, 2 * rows}, 0.5) : ir::kNoValue);
    in.push_back(ir::kNoValue);
    if (lens) {
      in.back() = net_.add_input(p + "lens", DType::kInt32, {Dim(s_.batch)});
      inputs_[p + "lens"] = reference::make_tensor(DType::kInt32, {s_.batch}, *lens);
    }
    std::vector<int64_t> state = batch_first_ ? std::vector<int64_t>{s_.batch, dirs, s_.hidden} : std::vector<int64_t>{dirs, s_.batch, s_.hidden};
    in.push_back(initial_states ? input(p + "h0", dtype_, state) : ir::kNoValue);
    if (op == OpKind::kLSTM) {
      in.push_back(initial_states ? input(p + "c0", dtype_, state) : ir::kNoValue);
      in.push_back(weight(p + "P", {dirs, 3 * s_.hidden}, 0.5));
    }
    while (in.back() == ir::kNoValue) in.pop_back();
    a.set("direction", direction);
    if (batch_first_) a.set("layout", int64_t(1));
    ir::Node node{p + "node", op, in, {}, a};
    for (size_t i = 0; i < outputs.size(); ++i) node.outputs.push_back(outputs[i] ? net_.add_value(p + str("out", i)) : ir::kNoValue);
    while (node.outputs.back() == ir::kNoValue) node.outputs.pop_back();
    for (ValueId v : node.outputs)
      if (v != ir::kNoValue) net_.add_output(v);
    net_.add_node(std::move(node));
  }

  // Every layer kind: RNN, GRU in both reset orders, LSTM with its options, each way, some outputs left out.
  void add_every_kind(std::optional<std::vector<double>> lens) {
    const std::vector<bool> all{true, true, true};
    add(OpKind::kRNN, "forward", {}, lens, {true, true});
    add(OpKind::kRNN, "bidirectional", attrs({{"activations", std::vector<std::string>{"Relu", "Affine"}},
                                               {"activation_alpha", std::vector<double>{0.5}},
                                               {"activation_beta", std::vector<double>{0.1}}}),
        lens, {false, true}, false, false);
    add(OpKind::kGRU, "reverse", {}, lens, {true, true});
    add(OpKind::kGRU, "bidirectional", attrs({{"linear_before_reset", int64_t(1)}, {"clip", 1.5}}), lens, {true, false});
    add(OpKind::kLSTM, "forward", {}, lens, all);
    add(OpKind::kLSTM, "bidirectional",
        attrs({{"input_forget", int64_t(1)}, {"activations", std::vector<std::string>{"HardSigmoid", "Softsign", "Elu", "Sigmoid",
                                                                                        "Tanh", "Softplus"}}}),
        lens, {false, true, true}, false);
    add(OpKind::kLSTM, "reverse", attrs({{"clip", 0.75}}), lens, {true, false, true});
  }

  void expect_gpu_matches_reference(S strategy, const std::string& label,
                                    const std::map<std::string, ir::TensorData>* reference_inputs = nullptr) {
    net_.finalize();
    SCOPED_TRACE(label);
    expect_outputs_close(run_on_gpu(net_, inputs_, plan::Precision::kFloat32, strategy),
                         reference::run(net_, reference_inputs ? *reference_inputs : inputs_), tolerance(dtype_));
  }

  const std::map<std::string, ir::TensorData>& inputs() const { return inputs_; }

 private:
  ValueId input(const std::string& name, DType dtype, const std::vector<int64_t>& dims) {
    inputs_[name] = random_tensor(dtype, dims, rng_);
    return net_.add_input(name, dtype, ir::Shape(dims.begin(), dims.end()));
  }
  ValueId weight(const std::string& name, const std::vector<int64_t>& dims, double scale) {
    return net_.add_weight(name, random_tensor(dtype_, dims, rng_, 0.1 * scale, scale));
  }

  DType dtype_;
  Shape3 s_;
  bool batch_first_;
  std::mt19937 rng_;
  ir::Network net_;
  std::map<std::string, ir::TensorData> inputs_;
  ValueId x_;
  int layers_ = 0;
};

class GpuRecurrent : public ::testing::TestWithParam<std::tuple<DType, S>> {};

// Every kind and direction at odd sizes, both layouts, full-length rows.
TEST_P(GpuRecurrent, LayersMatchReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  const Shape3 shapes[] = {{1, 1, 1, 1}, {9, 5, 7, 7}, {300, 5, 33, 33}, {9, 1, 33, 257}};
  uint32_t seed = 11;
  for (const Shape3& s : shapes)
    for (bool batch_first : {false, true}) {
      Layers layers(dtype, s, batch_first, ++seed);
      layers.add_every_kind(std::nullopt);
      layers.expect_gpu_matches_reference(strategy, str(dtype_name(dtype), " seq ", s.seq, " batch ", s.batch, " input ", s.input,
                                                        " hidden ", s.hidden, batch_first ? " batch first" : "", " seed ", seed, " ",
                                                        spec_name(strategy)));
    }
}

// Rows of lengths 0 to the whole sequence: Y zero past each row's end, Y_h
// and Y_c its state after its last step (the initial state for length 0).
TEST_P(GpuRecurrent, SequenceLensMatchReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  uint32_t seed = 101;
  for (bool batch_first : {false, true}) {
    Layers layers(dtype, {9, 5, 7, 33}, batch_first, ++seed);
    layers.add_every_kind(std::vector<double>{9, 0, 4, 1, 8});
    layers.expect_gpu_matches_reference(strategy, str(dtype_name(dtype), " lengths", batch_first ? " batch first" : "", " seed ", seed,
                                                      " ", spec_name(strategy)));
  }
}

// Lengths out of [0, seq] are an error on the CPU; the GPU clamps them, so it
// must give what the reference gives for the clamped lengths, and read nothing out of bounds.
TEST_P(GpuRecurrent, OutOfRangeLengthsAreClamped) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  Layers layers(dtype, {9, 5, 7, 7}, false, 7);
  layers.add_every_kind(std::vector<double>{-3, 9, 1000, 2, -2147483648.0});
  std::map<std::string, ir::TensorData> clamped = layers.inputs();
  for (auto& [name, tensor] : clamped)
    if (tensor.dtype == DType::kInt32) tensor = reference::make_tensor(DType::kInt32, {5}, {0, 9, 9, 2, 0});
  layers.expect_gpu_matches_reference(strategy, str(dtype_name(dtype), " clamped lengths ", spec_name(strategy)), &clamped);
}

// No steps (Y empty, Y_h and Y_c the initial states) and no batch rows.
TEST_P(GpuRecurrent, EmptySequencesAndBatches) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  for (Shape3 s : {Shape3{0, 5, 7, 7}, Shape3{9, 0, 7, 7}}) {
    Layers layers(dtype, s, false, 3);
    layers.add_every_kind(std::nullopt);
    layers.expect_gpu_matches_reference(strategy, str(dtype_name(dtype), " seq ", s.seq, " batch ", s.batch, " ", spec_name(strategy)));
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GpuRecurrent,
                         ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                                            ::testing::Values(S::kNone, S::kEager)),
                         [](const auto& info) {
                           return str(dtype_name(std::get<0>(info.param)), "_", spec_name(std::get<1>(info.param)));
                         });

}  // namespace
}  // namespace kiln::testing
