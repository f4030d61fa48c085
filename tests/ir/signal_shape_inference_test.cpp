// Shape inference of the signal ops (HannWindow, HammingWindow,
// BlackmanWindow, MelWeightMatrix, DFT, STFT): output shapes from constant,
// symbolic and data sizes (a size that is data is a fresh symbol of its own),
// and the errors that name the node and what was expected.
#include <gtest/gtest.h>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/ir/shape_inference.h"
#include "inference_test_util.h"

namespace kiln::ir {
namespace {

using inference_test::attrs;

const Dim N = Dim::symbol("N"), L = Dim::symbol("L");

TensorData int64_scalar(int64_t v) {
  TensorData t;
  t.dtype = DType::kInt64;
  t.data = Buffer::copy_of(&v, sizeof v);
  return t;
}

TensorData float_scalar(float v) {
  TensorData t;
  t.dtype = DType::kFloat32;
  t.data = Buffer::copy_of(&v, sizeof v);
  return t;
}

// The output of a one-node network as "dtype[dims]" (data-dependent symbols
// shown as '?'), or the error's message.
std::string outcome(Network& net, ValueId y) {
  net.add_output(y);
  try {
    net.finalize();
  } catch (const Error& e) {
    return e.what();
  }
  std::string dims;
  for (const Dim& d : net.value(y).shape) {
    std::string text = d.to_string();
    dims += (dims.empty() ? "" : ",") + (net.data_dependent_symbols().count(text) ? std::string("?") : text);
  }
  return str(dtype_name(net.value(y).dtype), "[", dims, "]");
}

testing::AssertionResult has(const std::string& message, const std::string& part) {
  return message.find(part) != std::string::npos ? testing::AssertionSuccess() : testing::AssertionFailure() << message;
}

std::string window(OpKind op, ValueId (*size)(Network&), Attributes a = {}) {
  Network net;
  return outcome(net, net.add_op1(op, {size(net)}, a, "w"));
}

TEST(SignalShapes, WindowsHaveTheirSize) {
  auto constant = [](Network& net) { return net.add_weight("size", int64_scalar(10)); };
  auto from_shape = [](Network& net) {
    ValueId x = net.add_input("x", DType::kFloat32, {N});
    return net.add_op1(OpKind::kSize, {x});
  };
  auto data = [](Network& net) { return net.add_input("size", DType::kInt32, {}); };
  EXPECT_EQ(window(OpKind::kHannWindow, constant), "float32[10]");
  EXPECT_EQ(window(OpKind::kHammingWindow, from_shape, attrs({{"output_datatype", int64_t(DType::kFloat16)}})), "float16[N]");
  EXPECT_EQ(window(OpKind::kBlackmanWindow, data, attrs({{"periodic", int64_t(0)}})), "float32[?]");
  EXPECT_TRUE(has(window(OpKind::kHannWindow, constant, attrs({{"output_datatype", int64_t(DType::kBool)}})),
                  "node 'w' (HannWindow): output_datatype 8 is not a numeric dtype"));
  auto negative = [](Network& net) { return net.add_weight("size", int64_scalar(-3)); };
  EXPECT_TRUE(has(window(OpKind::kHannWindow, negative), "size is -3; it must not be negative"));
  auto floats = [](Network& net) { return net.add_input("size", DType::kFloat32, {}); };
  EXPECT_TRUE(has(window(OpKind::kHannWindow, floats), "input 0 has dtype float32, which this op does not accept"));
}

TEST(SignalShapes, MelWeightMatrixIsBinsByBands) {
  auto mel = [](ValueId (*dft)(Network&)) {
    Network net;
    ValueId y = net.add_op1(OpKind::kMelWeightMatrix,
                            {net.add_weight("mels", int64_scalar(8)), dft(net), net.add_weight("rate", int64_scalar(8000)),
                             net.add_weight("lo", float_scalar(0)), net.add_weight("hi", float_scalar(4000))},
                            {}, "mel");
    return outcome(net, y);
  };
  EXPECT_EQ(mel([](Network& net) { return net.add_weight("dft", int64_scalar(17)); }), "float32[9,8]");
  EXPECT_EQ(mel([](Network& net) { return net.add_input("dft", DType::kInt64, {}); }), "float32[?,8]");
  Network net;
  ValueId bad = net.add_op1(OpKind::kMelWeightMatrix,
                            {net.add_weight("mels", int64_scalar(8)), net.add_weight("dft", int64_scalar(16)),
                             net.add_weight("rate", int64_scalar(0)), net.add_weight("lo", float_scalar(0)),
                             net.add_weight("hi", float_scalar(4000))},
                            {}, "mel");
  EXPECT_TRUE(has(outcome(net, bad), "node 'mel' (MelWeightMatrix): sample_rate is 0; it must be positive"));
}

std::string dft(Shape x, int64_t axis, std::optional<int64_t> length, Attributes a = {}, bool axis_is_data = false) {
  Network net;
  ValueId len = length ? net.add_weight("len", int64_scalar(*length)) : kNoValue;
  ValueId ax = axis_is_data ? net.add_input("axis", DType::kInt64, {}) : net.add_weight("axis", int64_scalar(axis));
  return outcome(net, net.add_op1(OpKind::kDFT, {net.add_input("x", DType::kFloat32, x), len, ax}, a, "dft"));
}

TEST(SignalShapes, DftKeepsOrSizesItsAxis) {
  Attributes inverse = attrs({{"inverse", int64_t(1)}}), onesided = attrs({{"onesided", int64_t(1)}});
  Attributes real_inverse = attrs({{"inverse", int64_t(1)}, {"onesided", int64_t(1)}});
  EXPECT_EQ(dft({N, Dim(10), Dim(1)}, 1, std::nullopt), "float32[N,10,2]");
  EXPECT_EQ(dft({N, L, Dim(2)}, -2, std::nullopt, inverse), "float32[N,L,2]");
  EXPECT_EQ(dft({N, Dim(10), Dim(1)}, 1, std::nullopt, onesided), "float32[N,6,2]");
  EXPECT_EQ(dft({N, Dim(10), Dim(1)}, 1, 7, onesided), "float32[N,4,2]");
  EXPECT_EQ(dft({Dim(6), N, Dim(2)}, 0, std::nullopt, real_inverse), "float32[10,N,1]");
  EXPECT_EQ(dft({Dim(6), N, Dim(2)}, 0, 11, real_inverse), "float32[11,N,1]");
  EXPECT_EQ(dft({Dim(3), Dim(5), Dim(1)}, 0, std::nullopt, {}, true), "float32[?,?,2]");  // which axis is data
  EXPECT_TRUE(has(dft({N, Dim(10), Dim(2)}, 2, std::nullopt), "node 'dft' (DFT): axis 2 is the trailing dim of real and imaginary parts"));
  EXPECT_TRUE(has(dft({N, Dim(10), Dim(3)}, 1, std::nullopt), "its last dim must be 1 (real) or 2 (real and imaginary parts)"));
  EXPECT_TRUE(has(dft({N, Dim(1), Dim(2)}, 1, std::nullopt, real_inverse), "the DFT length is 0; it must be at least 1"));
  EXPECT_TRUE(has(dft({N, Dim(10), Dim(1)}, 3, std::nullopt), "axis 3 is out of range for rank 3"));
}

std::string stft(Shape x, ValueId (*step)(Network&), std::optional<int64_t> window, std::optional<int64_t> length,
                 Attributes a = {}) {
  Network net;
  ValueId w = window ? net.add_input("window", DType::kFloat32, {Dim(*window)}) : kNoValue;
  ValueId len = length ? net.add_weight("len", int64_scalar(*length)) : kNoValue;
  return outcome(net, net.add_op1(OpKind::kSTFT, {net.add_input("x", DType::kFloat32, x), step(net), w, len}, a, "stft"));
}

TEST(SignalShapes, StftFramesTheSignal) {
  auto four = [](Network& net) { return net.add_weight("step", int64_scalar(4)); };
  auto data = [](Network& net) { return net.add_input("step", DType::kInt64, {}); };
  EXPECT_EQ(stft({N, Dim(128), Dim(1)}, four, 16, std::nullopt), "float32[N,29,9,2]");
  EXPECT_EQ(stft({N, Dim(128), Dim(2)}, four, std::nullopt, 16, attrs({{"onesided", int64_t(0)}})), "float32[N,29,16,2]");
  EXPECT_EQ(stft({Dim(1), Dim(128), Dim(1)}, four, std::nullopt, std::nullopt), "float32[1,1,65,2]");
  EXPECT_EQ(stft({Dim(1), Dim(128), Dim(1)}, data, 16, 16), "float32[1,?,9,2]");
  EXPECT_TRUE(has(stft({N, Dim(10), Dim(1)}, four, 16, std::nullopt), "node 'stft' (STFT): frame_length 16 is longer than the signal (10 samples)"));
  EXPECT_TRUE(has(stft({N, Dim(128), Dim(1)}, four, 16, 8), "frame_length and the window's length do not match: 8 vs 16"));
  auto zero = [](Network& net) { return net.add_weight("step", int64_scalar(0)); };
  EXPECT_TRUE(has(stft({N, Dim(128), Dim(1)}, zero, 16, std::nullopt), "frame_step is 0; it must be at least 1"));
}

}  // namespace
}  // namespace kiln::ir
