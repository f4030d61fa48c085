// Runs a test step in a forked child with a deadline, so a step that hangs
// (a FIFO opened for reading, a lock never released) fails the test instead
// of stalling the suite.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <thread>

namespace kiln::testing {

// The child's exit code (body's result; 98 if it threw), or -1 if it did not
// finish within `timeout` and was killed.
inline int run_forked(const std::function<int()>& body, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int code = 98;
    try {
      code = body();
    } catch (...) {
    }
    ::_exit(code);
  }
  if (pid < 0) return -3;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

}  // namespace kiln::testing
