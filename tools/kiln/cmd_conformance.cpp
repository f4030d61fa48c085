// kiln conformance: the ONNX backend node tests as kiln's conformance suite.
#include <array>
#include <iostream>

#include "cli.h"
#include "kiln/conformance.h"
#include "kiln/runtime.h"

namespace kiln::cli {

int cmd_conformance(const Args& args) {
  if (args.positional.size() != 1)
    fail(ErrorCode::kInvalidArgument, "usage: kiln conformance DIR [--device cpu] [--filter TEXT] [--verbose]");
  std::string device_name = args.get("--device", "cpu");
  if (device_name != "cpu" && device_name != "cuda" && device_name != "plan")
    fail(ErrorCode::kInvalidArgument, "--device must be cpu, plan or cuda");
  conformance::Device device = device_name == "cuda"   ? conformance::Device::kCuda
                               : device_name == "plan" ? conformance::Device::kPlan
                                                       : conformance::Device::kCpu;
  if (device == conformance::Device::kCuda) {
    std::string why;
    if (!runtime::cuda_available(&why)) fail(ErrorCode::kDevice, "--device cuda: ", why);
  }
  bool verbose = args.has("--verbose");
  using conformance::Status;
  auto label = [](Status s) { return s == Status::kPassed ? "PASS" : s == Status::kFailed ? "FAIL" : "SKIP"; };
  int done = 0;
  conformance::Report report = conformance::run_suite(args.positional[0], args.get("--filter"), device, args.has("--specialized"), [&](const conformance::CaseResult& r) {
    ++done;
    if (verbose || r.status == Status::kFailed)
      std::cout << label(r.status) << " " << r.name << (r.detail.empty() ? "" : ": " + r.detail) << "\n";
    if (!verbose && done % 100 == 0) std::cerr << "kiln conformance: " << done << " tests run\n";
  });
  std::map<std::string, std::array<int, 3>> per_op;
  for (auto& c : report.cases)
    for (auto& op : c.ops) per_op[op][size_t(c.status)]++;
  std::cout << "\nper op (passed/failed/skipped):\n";
  for (auto& [op, n] : per_op) std::cout << "  " << op << " " << n[0] << "/" << n[1] << "/" << n[2] << "\n";
  std::map<std::string, int> reasons;
  for (auto& c : report.cases)
    if (c.status == Status::kSkipped) reasons[c.detail.substr(0, c.detail.find(':'))]++;
  std::cout << "skips by reason:\n";
  for (auto& [reason, n] : reasons) std::cout << "  " << reason << ": " << n << "\n";
  std::cout << report.passed << " passed, " << report.failed << " failed, " << report.skipped << " skipped\n";
  return report.failed ? kTestsFailed : kOk;
}

}  // namespace kiln::cli
