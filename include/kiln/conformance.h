// Runs ONNX backend node tests (model.onnx + test_data_set_*/{input,output}_*.pb)
// against a kiln device and compares outputs with dtype-fitting tolerances.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kiln/export.h"

KILN_API_BEGIN
namespace kiln::conformance {

// kRandomChecked: the model holds a random op (RandomUniform, Bernoulli, ...),
// whose expected outputs come from numpy's generator, which kiln's Philox
// numbers cannot match; checked instead are every output's dtype and shape,
// the values of outputs that depend on no random op, and each random op's
// values against its distribution's support.
enum class Status { kPassed, kFailed, kSkipped, kRandomChecked };
// kCpu: the reference interpreter runs the imported network. kPlan: the
// builder lowers it to a plan whose network the reference runs (checks every
// builder pass). kCuda: the plan runs on the GPU.
enum class Device { kCpu, kPlan, kCuda };

struct CaseResult {
  std::string name;
  Status status = Status::kPassed;
  std::string detail;             // why it failed or was skipped
  std::vector<std::string> ops;   // op types of the model
  double seconds = 0;             // wall time of the case: load, build, run and compare
};

struct Report {
  std::vector<CaseResult> cases;
  int passed = 0, failed = 0, skipped = 0, random_checked = 0;
};

// Tolerances: |actual - expected| <= atol + rtol * |expected|.
struct Tolerance {
  double rtol, atol;
};
Tolerance tolerance_for(const std::string& dtype_name);

// `eager_specialization`: on the GPU, run kernels specialized for each test's
// shapes instead of the generic ones.
CaseResult run_case(const std::filesystem::path& test_dir, Device device = Device::kCpu, bool eager_specialization = false);
// Runs every test folder under `root` whose name contains `filter`; `progress`
// is called after each case.
Report run_suite(const std::filesystem::path& root, const std::string& filter, Device device, bool eager_specialization,
                 const std::function<void(const CaseResult&)>& progress);

}  // namespace kiln::conformance
KILN_API_END
