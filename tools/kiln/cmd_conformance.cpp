// kiln conformance: the ONNX backend node tests as kiln's conformance suite.
#include <algorithm>
#include <array>
#include <iostream>

#include "cli.h"
#include "kiln/conformance.h"
#include "kiln/runtime.h"

namespace kiln::cli {

int cmd_conformance(const ConformanceOptions& options, Json& doc) {
  const std::string& device_name = options.device;  // cpu, plan or cuda: the parser accepted no other
  conformance::Device device = device_name == "cuda"   ? conformance::Device::kCuda
                               : device_name == "plan" ? conformance::Device::kPlan
                                                       : conformance::Device::kCpu;
  if (device == conformance::Device::kCuda) {
    std::string why;
    if (!runtime::cuda_available(&why)) fail(ErrorCode::kDevice, "--device cuda: ", why);
  }
  bool verbose = options.verbose;
  using conformance::Status;
  auto label = [](Status s) {
    return s == Status::kPassed ? "PASS" : s == Status::kFailed ? "FAIL" : s == Status::kRandomChecked ? "RANDOM" : "SKIP";
  };
  int done = 0;
  conformance::Report report = conformance::run_suite(options.dir, options.filter, device, options.specialized, [&](const conformance::CaseResult& r) {
    ++done;
    if (verbose || r.status == Status::kFailed)
      std::cout << label(r.status) << " " << r.name << (r.detail.empty() ? "" : ": " + r.detail) << "\n";
    if (!verbose && done % 100 == 0) kiln::log(Severity::kInfo, str(done, " tests run"));
  });
  std::map<std::string, std::array<int, 4>> per_op;  // by Status
  for (auto& c : report.cases)
    for (auto& op : c.ops) per_op[op][size_t(c.status)]++;
  std::cout << "\nper op (passed/failed/skipped, random checked):\n";
  for (auto& [op, n] : per_op)
    std::cout << "  " << op << " " << n[0] << "/" << n[1] << "/" << n[2] << (n[3] ? str(", ", n[3], " random") : "") << "\n";
  std::map<std::string, int> reasons;
  for (auto& c : report.cases)
    if (c.status == Status::kSkipped) reasons[c.detail.substr(0, c.detail.find(':'))]++;
  std::cout << "skips by reason:\n";
  for (auto& [reason, n] : reasons) std::cout << "  " << reason << ": " << n << "\n";
  // Where the time went: a slow case is a slow kernel compile or a slow kernel.
  std::vector<const conformance::CaseResult*> slowest;
  double total_seconds = 0;
  for (auto& c : report.cases) {
    slowest.push_back(&c);
    total_seconds += c.seconds;
  }
  size_t shown = std::min<size_t>(slowest.size(), 5);
  std::partial_sort(slowest.begin(), slowest.begin() + long(shown), slowest.end(),
                    [](auto* a, auto* b) { return a->seconds > b->seconds; });
  std::cout << "slowest cases:";
  for (size_t i = 0; i < shown; ++i) std::cout << (i ? ", " : " ") << slowest[i]->name << " " << int64_t(slowest[i]->seconds * 1000) << " ms";
  std::cout << " (" << double(int64_t(total_seconds * 10)) / 10 << " s in all)\n";
  std::cout << report.passed << " passed, " << report.failed << " failed, " << report.skipped << " skipped, " << report.random_checked
            << " random (shape, dtype and support checked)\n";
  doc["dir"] = options.dir;
  doc["device"] = device_name;
  doc["passed"] = report.passed;
  doc["failed"] = report.failed;
  doc["skipped"] = report.skipped;
  doc["random_checked"] = report.random_checked;
  doc["failures"] = Json::array();
  for (auto& c : report.cases)
    if (c.status == Status::kFailed) doc["failures"].push_back({{"name", c.name}, {"detail", c.detail}});
  doc["per_op"] = Json::object();
  for (auto& [op, n] : per_op)
    doc["per_op"][op] = {{"passed", n[0]}, {"failed", n[1]}, {"skipped", n[2]}, {"random_checked", n[3]}};
  doc["skips_by_reason"] = reasons;
  doc["total_seconds"] = total_seconds;
  if (verbose) {  // every case, as the text lists them
    doc["cases"] = Json::array();
    for (auto& c : report.cases)
      doc["cases"].push_back({{"name", c.name}, {"status", label(c.status)}, {"detail", c.detail}, {"seconds", c.seconds}});
  }
  return report.failed ? kTestsFailed : kOk;
}

}  // namespace kiln::cli
