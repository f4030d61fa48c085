// onnxruntime as an oracle for compare_layers: a Python process runs the model
// with onnxruntime's CPU provider and hands back the wanted tensors as .npy
// files. A process of its own rather than a link against onnxruntime: users
// have it as a Python package, and kiln then needs no build-time dependency.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "kiln/debug.h"
#include "kiln/error.h"
#include "kiln/npy.h"

extern char** environ;

namespace kiln::debug {

namespace {

namespace fs = std::filesystem;

// argv: MODEL WORKDIR. WORKDIR/request.txt lists "input<TAB>NAME<TAB>FILE" and
// "want<TAB>NAME" lines; the script writes WORKDIR/out_N.npy and lists
// "NAME<TAB>FILE" lines in WORKDIR/outputs.txt. Exit 3: a package is missing.
constexpr const char* kScript = R"PY(
import sys
try:
    import numpy as np, onnx, onnxruntime as ort
except ImportError as e:
    sys.stderr.write(f"{e}; install them with: {sys.executable} -m pip install onnx onnxruntime\n")
    sys.exit(3)
model_path, work = sys.argv[1], sys.argv[2]
feeds, wanted = {}, []
with open(f"{work}/request.txt", encoding="utf-8") as f:
    for line in f.read().splitlines():
        kind, *rest = line.split("\t")
        if kind == "input":
            feeds[rest[0]] = np.load(rest[1])
        elif kind == "want":
            wanted.append(rest[0])
model = onnx.load(model_path)
graph = model.graph
produced = {o for node in graph.node for o in node.output if o}
outputs = [o.name for o in graph.output]
for name in wanted:
    if name in produced and name not in outputs:
        graph.output.append(onnx.ValueInfoProto(name=name))
        outputs.append(name)
options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
names = [o.name for o in session.get_outputs()]
with open(f"{work}/outputs.txt", "w", encoding="utf-8") as index:
    for i, (name, value) in enumerate(zip(names, session.run(names, feeds))):
        if name in wanted:
            np.save(f"{work}/out_{i}.npy", np.ascontiguousarray(value))
            index.write(f"{name}\t{work}/out_{i}.npy\n")
)PY";

// A fresh private folder, removed with everything in it when it goes.
struct WorkDir {
  fs::path path;
  WorkDir() {
    std::string pattern = (fs::temp_directory_path() / "kiln-onnxruntime-XXXXXX").string();
    if (!mkdtemp(pattern.data())) fail(ErrorCode::kIoError, "creating a folder in ", fs::temp_directory_path(), ": ", std::strerror(errno));
    path = pattern;
  }
  ~WorkDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

bool fits_a_line(const std::string& name) { return name.find_first_of("\t\r\n") == std::string::npos; }

// Runs python -c kScript MODEL WORK with stdout and stderr into WORK/log.txt; its exit status.
int run_script(const std::string& python, const fs::path& model, const fs::path& work) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  std::string log = (work / "log.txt").string();
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::string model_arg = model.string(), work_arg = work.string();
  std::vector<char*> argv{const_cast<char*>(python.c_str()), const_cast<char*>("-c"), const_cast<char*>(kScript),
                          model_arg.data(), work_arg.data(), nullptr};
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, python.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0)
    fail(ErrorCode::kInvalidArgument, "--reference onnxruntime runs '", python, "' (set KILN_PYTHON to another), which could not start: ",
         std::strerror(rc));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) fail(ErrorCode::kIoError, "waiting for '", python, "': ", std::strerror(errno));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string last_lines(const fs::path& file, size_t count) {
  std::ifstream in(file);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::string out;
  for (size_t i = lines.size() > count ? lines.size() - count : 0; i < lines.size(); ++i) out += "\n  " + lines[i];
  return out;
}

}  // namespace

std::map<std::string, ir::TensorData> onnxruntime_tensors(const fs::path& model_path, const std::map<std::string, ir::TensorData>& inputs,
                                                          const std::set<std::string>& names, std::string python) {
  if (python.empty()) python = std::getenv("KILN_PYTHON") ? std::getenv("KILN_PYTHON") : "python3";
  WorkDir work;
  std::ostringstream request;
  size_t n = 0;
  for (const auto& [name, tensor] : inputs) {
    if (!fits_a_line(name)) fail(ErrorCode::kUnsupported, "--reference onnxruntime: input name '", name, "' holds a tab or line break");
    fs::path file = work.path / ("in_" + std::to_string(n++) + ".npy");
    io::write_npy(file, tensor);
    request << "input\t" << name << "\t" << file.string() << "\n";
  }
  for (const std::string& name : names)
    if (fits_a_line(name)) request << "want\t" << name << "\n";  // others: not compared, with the reason
  std::ofstream request_file(work.path / "request.txt");
  request_file << request.str();
  if (!request_file.flush()) fail(ErrorCode::kIoError, "writing ", work.path / "request.txt");

  int rc = run_script(python, model_path, work.path);
  if (rc == 3)
    fail(ErrorCode::kInvalidArgument, "--reference onnxruntime needs the onnx and onnxruntime packages in '", python,
         "' (set KILN_PYTHON to another Python):", last_lines(work.path / "log.txt", 1));
  if (rc != 0)
    fail(ErrorCode::kInvalidModel, "onnxruntime could not run ", model_path, " (exit ", rc, "):", last_lines(work.path / "log.txt", 8));

  std::map<std::string, ir::TensorData> tensors;
  std::ifstream index(work.path / "outputs.txt");
  for (std::string line; std::getline(index, line);) {
    size_t tab = line.find('\t');
    if (tab == std::string::npos) fail(ErrorCode::kIoError, "onnxruntime's output list has a bad line: ", line);
    tensors[line.substr(0, tab)] = io::read_npy(line.substr(tab + 1));
  }
  return tensors;
}

}  // namespace kiln::debug
