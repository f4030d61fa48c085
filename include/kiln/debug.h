// Layer-by-layer accuracy (kiln debug --compare-layers): every tensor a plan
// materializes, compared with the reference interpreter's value of the same
// tensor, in plan order, so the first node whose error exceeds the tolerance
// can be named with its op and its inputs. The plan's values come from the
// GPU (runtime::read_every_tensor) or from the reference interpreter running
// the plan's own network (which checks the builder's rewrites on the CPU);
// onnxruntime can stand in for the reference as an independent oracle.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kiln/export.h"
#include "kiln/ir/network.h"
#include "kiln/plan.h"

KILN_API_BEGIN
namespace kiln::debug {

// compare_layers passes an element when |got - reference| <= atol + rtol *
// max(|reference|, RMS of the reference tensor): near zero, a tensor's own
// scale bounds the rounding a low precision leaves. (kiln run
// --compare-reference takes the same defaults without the RMS floor.)
struct Tolerance {
  double rtol = 0, atol = 0;
};
// What a correct plan of `precision` may differ by from the float64
// reference: fp32 1e-4/1e-5, fp16 1e-2/1e-3, bf16 5e-2/1e-2 (rtol/atol).
Tolerance default_tolerance(plan::Precision precision);

// The reference tensor a plan tensor holds.
struct Counterpart {
  std::string tensor;         // a tensor of the reference network; empty: none
  std::vector<int64_t> perm;  // the plan holds it transposed by `perm`; empty: in the same layout
  std::string why_not;        // when `tensor` is empty
};
// The counterpart of plan tensor `name` in `model`, the network the plan was
// built from. The builder leaves a model tensor's name only on a tensor that
// holds its values (a fused node writes its last source op's output under
// that op's output name), in the plan's precision. It names the tensors it
// makes STEM + SUFFIX + "__kN": `X_float16__kN` and `X_bfloat16__kN` hold X
// at the plan's precision, `X_channels_last__kN` and `X_pre_transpose__kN`
// hold X channels-last. Other tensors the builder made have none.
Counterpart counterpart(const ir::Network& model, const std::string& name);

// What a node computes, fused nodes by their sources: "MatMul+bias+relu",
// "Add+Mul+Tanh", "MatMul+Softmax+MatMul"; other nodes: their op.
std::string node_sources(const ir::Node& node);

struct TensorComparison {
  size_t node = 0;  // index in the plan's network
  std::string node_name, op, sources;
  std::string tensor, reference_tensor;  // reference_tensor: the counterpart compared with
  DType dtype = DType::kFloat32;
  std::vector<int64_t> dims;
  bool compared = false;
  std::string why_not;  // not compared: why
  double max_abs_error = 0, max_rel_error = 0;  // rel: |d| / max(|reference|, 1e-6)
  double relative_l2 = 0;                       // ||got - reference|| / ||reference||
  double reference_rms = 0;                     // the floor of |reference| in the tolerance
  size_t elements = 0, beyond = 0;              // elements beyond the tolerance
  size_t first_beyond = 0;
  double got_at_first = 0, reference_at_first = 0;
  bool pass = true;  // compared and no element beyond the tolerance (true when not compared)
};

// The values one input of a node took (on the reference where there is one).
struct ValueRange {
  std::string tensor;
  std::string source;  // "reference", "input", "weight" or "plan" (no reference counterpart)
  DType dtype = DType::kFloat32;
  std::vector<int64_t> dims;
  double min = 0, max = 0, mean = 0;  // 0 for an empty tensor
};

struct LayerReport {
  std::string reference;  // "model" or "plan": the network the reference interpreter ran; or the oracle's name
  Tolerance tolerance;
  std::vector<TensorComparison> tensors;  // every node output, in plan order
  std::optional<size_t> first_failure;    // index into tensors
  std::vector<ValueRange> first_failure_inputs;
  size_t compared = 0, failed = 0, not_comparable = 0;
};

// Another implementation of the model standing in for the reference
// interpreter: `tensors` returns those of the named tensors of the model it
// computed on the inputs.
struct Oracle {
  std::string name;  // "onnxruntime"
  std::function<std::map<std::string, ir::TensorData>(const std::set<std::string>& names)> tensors;
};

// Compares `got` (plan tensor name -> value) with the reference interpreter's
// run of `model` (null: of the plan's own network) on `inputs`, or with the
// oracle's run of `model` when one is given. Values are compared as float64;
// plan tensors without a counterpart, or whose counterpart has other dims,
// are listed with the reason.
LayerReport compare_layers(const plan::Plan& plan, const std::map<std::string, ir::TensorData>& got, const ir::Network* model,
                           const std::map<std::string, ir::TensorData>& inputs, Tolerance tolerance,
                           const Oracle* oracle = nullptr);

// The named tensors of the ONNX model at `model_path` as onnxruntime's CPU
// provider computes them on `inputs`, with graph optimizations off so every
// intermediate tensor keeps the model's meaning. Runs `python` (default: the
// KILN_PYTHON environment variable, else python3) with the onnx and
// onnxruntime packages; names the model does not compute are left out. Throws
// kInvalidArgument when that Python cannot start or lacks them (with the
// command that installs them), kInvalidModel when onnxruntime rejects the model.
std::map<std::string, ir::TensorData> onnxruntime_tensors(const std::filesystem::path& model_path,
                                                          const std::map<std::string, ir::TensorData>& inputs,
                                                          const std::set<std::string>& names, std::string python = "");

}  // namespace kiln::debug
KILN_API_END
