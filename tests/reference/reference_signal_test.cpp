// The signal ops' reference kernels against values worked out from their
// definitions (numpy's FFT for the transforms): windows, a mel matrix, DFT in
// each mode with cut and padded lengths, the inverse of a one-sided spectrum,
// STFT frames, and the errors for edges outside the spectrum.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"

namespace kiln::reference {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;

ir::Attributes attrs(std::initializer_list<std::pair<const char*, ir::AttrValue>> list) {
  ir::Attributes a;
  for (auto& [name, value] : list) a.set(name, value);
  return a;
}

ValueId int_weight(ir::Network& net, const std::string& name, int64_t v) {
  return net.add_weight(name, make_tensor(DType::kInt64, {}, {double(v)}));
}

// The one output of `net` (finalized here) run on `inputs`, as doubles.
std::vector<double> run_one(ir::Network& net, ValueId y, const std::map<std::string, Tensor>& inputs = {}) {
  net.add_output(y);
  net.finalize();
  return ir::read_doubles(run(net, inputs).at(0));
}

void expect_near(const std::vector<double>& got, const std::vector<double>& want, double tolerance = 1e-12) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tolerance) << "element " << i;
}

std::vector<double> window(OpKind op, int64_t size, int64_t periodic) {
  ir::Network net;
  ValueId y = net.add_op1(op, {int_weight(net, "size", size)},
                          attrs({{"periodic", periodic}, {"output_datatype", int64_t(DType::kFloat64)}}));
  return run_one(net, y);
}

TEST(ReferenceSignal, Windows) {
  expect_near(window(OpKind::kHannWindow, 4, 1), {0, 0.5, 1, 0.5});
  expect_near(window(OpKind::kHannWindow, 5, 0), {0, 0.5, 1, 0.5, 0});
  expect_near(window(OpKind::kHammingWindow, 4, 1), {4.0 / 46, 25.0 / 46, 1, 25.0 / 46});  // ONNX's 25/46 and 21/46
  expect_near(window(OpKind::kBlackmanWindow, 3, 0), {0, 1, 0});
  expect_near(window(OpKind::kBlackmanWindow, 4, 1), {0, 0.34, 1, 0.34});
  EXPECT_TRUE(window(OpKind::kHannWindow, 0, 1).empty());
  EXPECT_TRUE(std::isnan(window(OpKind::kHannWindow, 1, 0).at(0)));  // 0 / 0, as ONNX's definition
}

std::vector<double> mel(double upper) {
  ir::Network net;
  ValueId y = net.add_op1(OpKind::kMelWeightMatrix,
                          {int_weight(net, "mels", 1), int_weight(net, "dft", 8), int_weight(net, "rate", 8),
                           net.add_weight("lo", make_tensor(DType::kFloat32, {}, {0})),
                           net.add_weight("hi", make_tensor(DType::kFloat32, {}, {upper}))},
                          {}, "mel");
  return run_one(net, y);
}

TEST(ReferenceSignal, MelWeightMatrix) {
  // Mel points at 0, 1.33 and 2.66 Hz: bins floor(9 hz / 8) = 0, 1, 2, a triangle peaking at bin 1.
  expect_near(mel(4), {0, 1, 0, 0, 0});
  try {
    mel(40);  // mel point 1 at 13.09 Hz: bin 14, past the 5 bins
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("node 'mel' (MelWeightMatrix): mel point 1 (13.0871 Hz) falls in frequency bin 14, outside the 5 bins"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("must lie in [0, sample_rate / 2]"), std::string::npos) << message;
  }
}

// DFT of x [1, n, parts] along axis 1.
std::vector<double> dft(std::vector<double> x, int64_t parts, int64_t length, int64_t inverse, int64_t onesided) {
  ir::Network net;
  int64_t n = int64_t(x.size()) / parts;
  ValueId in = net.add_input("x", DType::kFloat64, {Dim(1), Dim(n), Dim(parts)});
  ValueId len = length > 0 ? int_weight(net, "len", length) : ir::kNoValue;
  ValueId y = net.add_op1(OpKind::kDFT, {in, len, int_weight(net, "axis", 1)}, attrs({{"inverse", inverse}, {"onesided", onesided}}));
  return run_one(net, y, {{"x", make_tensor(DType::kFloat64, {1, n, parts}, x)}});
}

TEST(ReferenceSignal, DftModes) {
  expect_near(dft({1, 2, 3, 4}, 1, 0, 0, 0), {10, 0, -2, 2, -2, 0, -2, -2});
  expect_near(dft({1, 2, 3, 4}, 1, 0, 0, 1), {10, 0, -2, 2, -2, 0});
  expect_near(dft({1, 2, 3, 4}, 1, 2, 0, 0), {3, 0, -1, 0});  // cut to 2 points
  double h = std::sqrt(3.0) / 2;
  expect_near(dft({1, 2, 3, 4}, 1, 6, 0, 0), {10, 0, -3.5, -5 * h, 2.5, h, -2, 0, 2.5, -h, -3.5, 5 * h});  // padded to 6
  expect_near(dft({10, 0, -2, 2, -2, 0, -2, -2}, 2, 0, 1, 0), {1, 0, 2, 0, 3, 0, 4, 0});        // inverse
  expect_near(dft({10, 0, -2, 2, -2, 0}, 2, 0, 1, 1), {1, 2, 3, 4});                           // of a one-sided spectrum
  expect_near(dft({10, 7, -2, 2, -2, 5}, 2, 0, 1, 1), {1, 2, 3, 4});  // the DC and Nyquist bins' imaginary parts drop out
}

TEST(ReferenceSignal, StftFrames) {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat64, {Dim(1), Dim(8), Dim(1)});
  ValueId y = net.add_op1(OpKind::kSTFT, {x, int_weight(net, "step", 2), ir::kNoValue, int_weight(net, "len", 4)});
  std::vector<double> got = run_one(net, y, {{"x", make_tensor(DType::kFloat64, {1, 8, 1}, {1, 2, 3, 4, 5, 6, 7, 8})}});
  expect_near(got, {10, 0, -2, 2, -2, 0, 18, 0, -2, 2, -2, 0, 26, 0, -2, 2, -2, 0});  // frames [1..4], [3..6], [5..8]
}

}  // namespace
}  // namespace kiln::reference
