#include <iostream>
#include "kiln/conformance.h"
int main(int argc, char** argv) {
  auto rep = kiln::conformance::run_suite(argv[1], argc > 2 ? argv[2] : "", [](const kiln::conformance::CaseResult& r) {
    const char* s = r.status == kiln::conformance::Status::kPassed ? "PASS" : r.status == kiln::conformance::Status::kFailed ? "FAIL" : "SKIP";
    std::cout << s << " " << r.name << " " << r.detail << "\n";
  });
  std::cout << rep.passed << " passed, " << rep.failed << " failed, " << rep.skipped << " skipped\n";
}
