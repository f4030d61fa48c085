// The signal ops on the GPU against the reference interpreter (float64), on
// seeded random non-zero data: HannWindow, HammingWindow and BlackmanWindow
// sized by the input's shape (1, 7, 33, 1000 points and empty), MelWeightMatrix
// with the sample rate and edges as data, DFT forward, inverse, one-sided and
// inverse of a one-sided spectrum over real and complex lines of odd lengths,
// cut and padded, and STFT with and without a window; fp32, fp16, bf16 and
// fp64, with generic and with shape-specialized kernels. An axis, frame_step
// or frame_length that is data is read back by enqueue.
#include "gpu_test_util.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;
using P = plan::Precision;
using S = runtime::KernelSpecialization;

const DType kFloats[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64};

// Relative to each output's largest magnitude: float32 sums of up to 1000
// terms, or the one rounding of an fp16 or bf16 output (both sides read the
// same rounded inputs).
double tolerance(DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return 2e-3;
    case DType::kBFloat16: return 1.6e-2;
    case DType::kFloat64: return 1e-9;
    default: return 2e-5;
  }
}

ValueId int_input(ir::Network& net, const std::string& name) { return net.add_input(name, DType::kInt64, {}); }

ir::TensorData int_value(int64_t v) { return reference::make_tensor(DType::kInt64, {}, {double(v)}); }

class GpuSignal : public ::testing::TestWithParam<S> {};

// Each window, periodic and symmetric, its size the length of x (a dim of
// the shape, so the sizes of one context's runs differ); every float output
// type, float32 in an fp16 plan (the window computed in fp16), and int32 for
// the periodic Hamming window (values in [0.087, 1]).
TEST_P(GpuSignal, WindowsMatchReference) {
  KILN_REQUIRE_GPU();
  std::vector<std::pair<DType, P>> types = {{DType::kFloat32, P::kFloat16}, {DType::kInt32, P::kFloat32}};
  for (DType d : kFloats) types.push_back({d, P::kFloat32});
  for (OpKind op : {OpKind::kHannWindow, OpKind::kHammingWindow, OpKind::kBlackmanWindow})
    for (int64_t periodic : {0, 1})
      for (auto [out, precision] : types) {
        if (out == DType::kInt32 && (op != OpKind::kHammingWindow || !periodic)) continue;
        SCOPED_TRACE(str(ir::op_name(op), " periodic ", periodic, " of ", dtype_name(out), " at ", plan::precision_name(precision)));
        ir::Network net;
        ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("n")});
        ValueId size = net.add_op1(OpKind::kGather, {net.add_op1(OpKind::kShape, {x}), scalar(net, "zero", DType::kInt64, 0)},
                                   attrs({{"axis", int64_t(0)}}));
        net.add_output(net.add_op1(op, {size}, attrs({{"periodic", periodic}, {"output_datatype", int64_t(out)}})));
        net.finalize();
        std::mt19937 rng(7);
        std::vector<Feeds> runs;
        // A symmetric window of one point is NaN (0 / 0) on both sides, which the comparison does not take.
        for (int64_t n : {periodic ? 1 : 2, 7, 33, 1000, 0}) runs.push_back({{"x", random_tensor(DType::kFloat32, {n}, rng)}});
        double tol = out == DType::kInt32 ? 0 : precision == P::kFloat16 ? tolerance(DType::kFloat16) : tolerance(out);
        expect_op_matches_reference(net, op, runs, precision, GetParam(), tol);
      }
}

// Mel matrices of 1 to 33 bands over DFTs of 7 to 1000 points, the sample
// rate and the edges given at run time (read on the device); float32 in an
// fp16 plan too, with float64 edges (float32 ones would enter it as fp16).
TEST_P(GpuSignal, MelWeightMatrixMatchesReference) {
  KILN_REQUIRE_GPU();
  struct Case {
    int64_t mels, dft_length, rate;
    double lower, upper;
  };
  const Case cases[] = {{8, 16, 8192, 0, 4096}, {33, 1000, 16000, 20, 7999}, {1, 7, 100, 10, 40}, {7, 33, 22050, 133.3, 9000}};
  struct Types {
    DType hertz, out;
    P precision;
  };
  std::vector<Types> types = {{DType::kFloat64, DType::kFloat32, P::kFloat16}};
  for (DType hertz : {DType::kFloat32, DType::kFloat64})
    for (DType out : kFloats) types.push_back({hertz, out, P::kFloat32});
  for (auto [hertz, out, precision] : types)
    for (const Case& c : cases) {
      SCOPED_TRACE(str("MelWeightMatrix ", c.mels, " bands over ", c.dft_length, " points at ", c.rate, " Hz, ", dtype_name(hertz),
                       " edges, ", dtype_name(out), " at ", plan::precision_name(precision)));
      ir::Network net;
      ValueId rate = net.add_input("rate", DType::kInt32, {}), lower = net.add_input("lower", hertz, {}),
              upper = net.add_input("upper", hertz, {});
      net.add_output(net.add_op1(OpKind::kMelWeightMatrix,
                                 {scalar(net, "mels", DType::kInt32, double(c.mels)), scalar(net, "dft", DType::kInt32, double(c.dft_length)),
                                  rate, lower, upper},
                                 attrs({{"output_datatype", int64_t(out)}})));
      net.finalize();
      Feeds feeds = {{"rate", reference::make_tensor(DType::kInt32, {}, {double(c.rate)})},
                     {"lower", reference::make_tensor(hertz, {}, {c.lower})},
                     {"upper", reference::make_tensor(hertz, {}, {c.upper})}};
      double tol = precision == P::kFloat16 ? tolerance(DType::kFloat16) : tolerance(out);
      expect_op_matches_reference(net, OpKind::kMelWeightMatrix, {feeds}, precision, GetParam(), tol);
    }
}

struct DftCase {
  std::vector<int64_t> dims;  // the last: 1 real, 2 complex
  int64_t axis, dft_length;   // dft_length -1: none given
  bool inverse, onesided;
};

// One DFT node over input x; the axis a constant or, with `axis_is_data`, an input.
ir::Network dft_net(DType dtype, const DftCase& c, bool axis_is_data) {
  ir::Network net;
  ValueId x = net.add_input("x", dtype, ir::shape_of(c.dims));
  ValueId length = c.dft_length < 0 ? ir::kNoValue : scalar(net, "dft_length", DType::kInt64, double(c.dft_length));
  ValueId axis = axis_is_data ? int_input(net, "axis") : scalar(net, "axis", DType::kInt64, double(c.axis));
  net.add_output(net.add_op1(OpKind::kDFT, {x, length, axis},
                             attrs({{"inverse", int64_t(c.inverse)}, {"onesided", int64_t(c.onesided)}})));
  net.finalize();
  return net;
}

// Lines of 1 to 1000 points along the first, a middle and the last axis
// before the complex dim, each mode, real and complex input, the DFT length
// the axis', shorter (cut) or longer (zero-padded), an empty batch.
TEST_P(GpuSignal, DftMatchesReference) {
  KILN_REQUIRE_GPU();
  const DftCase cases[] = {
      {{2, 7, 3, 1}, 1, -1, false, false},  {{2, 7, 3, 2}, 1, -1, false, true},   {{1000, 1}, 0, -1, false, false},
      {{3, 33, 2}, -2, -1, true, false},    {{3, 33, 2}, 1, 40, false, false},    {{4, 1, 5, 2}, 1, -1, false, false},
      {{5, 33, 1}, 1, 20, false, true},     {{2, 17, 3, 2}, 1, -1, true, true},   {{2, 17, 1}, 1, 33, true, true},
      {{2, 6, 2}, 1, 11, true, true},       {{0, 8, 1}, 1, -1, false, false},     {{7, 1000, 2}, 1, 1000, true, false},
  };
  uint32_t seed = 90;
  for (DType dtype : kFloats)
    for (const DftCase& c : cases) {
      SCOPED_TRACE(str("DFT of ", dtype_name(dtype), " ", ir::shape_to_string(ir::shape_of(c.dims)), " axis ", c.axis, " length ",
                       c.dft_length, " inverse ", c.inverse, " onesided ", c.onesided, " seed ", seed));
      std::mt19937 rng(seed++);
      expect_op_matches_reference(dft_net(dtype, c, false), OpKind::kDFT, {{{"x", random_tensor(dtype, c.dims, rng)}}}, P::kFloat32,
                                  GetParam(), tolerance(dtype));
    }
}

// The axis as data: enqueue reads it back before the DFT runs, so one
// context transforms along different axes from call to call.
TEST_P(GpuSignal, DftAlongAnAxisThatIsData) {
  KILN_REQUIRE_GPU();
  ir::Network net = dft_net(DType::kFloat32, {{3, 7, 33, 1}, 0, -1, false, true}, true);
  std::mt19937 rng(5);
  std::vector<Feeds> runs;
  for (int64_t axis : {1, -2, 0}) runs.push_back({{"x", random_tensor(DType::kFloat32, {3, 7, 33, 1}, rng)}, {"axis", int_value(axis)}});
  expect_op_matches_reference(net, OpKind::kDFT, runs, P::kFloat32, GetParam(), tolerance(DType::kFloat32), 64);
}

struct StftCase {
  std::vector<int64_t> dims;  // [batch, length, 1 or 2]
  int64_t step, frame_length;  // frame_length -1: the window's (33 points), or the signal's without one
  bool window, onesided;
};

// Frames of 1 to 400 samples, one frame or hundreds, real and complex
// signals, with a window or without, one-sided or not, an empty batch.
TEST_P(GpuSignal, StftMatchesReference) {
  KILN_REQUIRE_GPU();
  const StftCase cases[] = {
      {{2, 1000, 1}, 7, -1, true, true},   {{1, 64, 2}, 5, 16, false, false}, {{3, 33, 1}, 1, -1, false, true},
      {{1, 7, 1}, 1, 1, false, true},      {{2, 1000, 1}, 160, 400, true, true}, {{1, 129, 2}, 8, 33, true, false},
      {{0, 40, 1}, 4, 8, false, true},
  };
  uint32_t seed = 300;
  for (DType dtype : kFloats)
    for (const StftCase& c : cases) {
      SCOPED_TRACE(str("STFT of ", dtype_name(dtype), " ", ir::shape_to_string(ir::shape_of(c.dims)), " step ", c.step, " frame ",
                       c.frame_length, " window ", c.window, " onesided ", c.onesided, " seed ", seed));
      std::mt19937 rng(seed++);
      ir::Network net;
      Feeds feeds = {{"signal", random_tensor(dtype, c.dims, rng)}};
      ValueId signal = net.add_input("signal", dtype, ir::shape_of(c.dims));
      ValueId window = ir::kNoValue, length = ir::kNoValue;
      int64_t frame = c.frame_length >= 0 ? c.frame_length : c.window ? 33 : c.dims[1];
      if (c.window) {
        window = net.add_input("window", dtype, {Dim(frame)});
        feeds["window"] = random_tensor(dtype, {frame}, rng);
      }
      if (c.frame_length >= 0) length = scalar(net, "frame_length", DType::kInt64, double(c.frame_length));
      net.add_output(net.add_op1(OpKind::kSTFT, {signal, scalar(net, "step", DType::kInt64, double(c.step)), window, length},
                                 attrs({{"onesided", int64_t(c.onesided)}})));
      net.finalize();
      expect_op_matches_reference(net, OpKind::kSTFT, {feeds}, P::kFloat32, GetParam(), tolerance(dtype));
    }
}

// frame_step and frame_length as data: the frames and bins follow from values
// enqueue reads back, different on each call of one context.
TEST_P(GpuSignal, StftWithFramesThatAreData) {
  KILN_REQUIRE_GPU();
  ir::Network net;
  ValueId signal = net.add_input("signal", DType::kFloat32, {Dim(2), Dim(300), Dim(1)});
  net.add_output(net.add_op1(OpKind::kSTFT, {signal, int_input(net, "step"), ir::kNoValue, int_input(net, "frame_length")}));
  net.finalize();
  std::mt19937 rng(17);
  std::vector<Feeds> runs;
  for (auto [step, frame] : {std::pair<int64_t, int64_t>{10, 64}, {1, 7}, {300, 300}})
    runs.push_back({{"signal", random_tensor(DType::kFloat32, {2, 300, 1}, rng)}, {"step", int_value(step)},
                    {"frame_length", int_value(frame)}});
  expect_op_matches_reference(net, OpKind::kSTFT, runs, P::kFloat32, GetParam(), tolerance(DType::kFloat32), 300);
}

INSTANTIATE_TEST_SUITE_P(Kernels, GpuSignal, ::testing::Values(S::kNone, S::kEager),
                         [](const auto& info) { return std::string(runtime::kernel_specialization_name(info.param)); });

}  // namespace
}  // namespace kiln::testing
