#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build kiln, run the GPU test suite, the
# ONNX conformance suite on the GPU (and on the CPU for comparison), then the
# benchmarks, and print a short table last. Logs and JSON go to $OUT (or
# build-gpu/out). Two sets of ONNX node tests: Debian's (from
# /usr/share/libonnx-testdata or .carry/onnx-node.tar.xz, see docs/gpu.md) and
# those of the python3's onnx package, written here without network access.
#
# Within the 10-minute calls a GPU machine may allow, run a part:
#   KILN_GPU_STAGES="tests conformance"  stages to run, of: tests stress memcheck
#                                        tsan python cpu conformance bench (default: all)
#   KILN_GPU_TEST_FILTER='GpuVision*'    the GPU suite through this gtest filter
#                                        (default: every GPU test but the stress ones, by ctest)
#   KILN_MEMCHECK_FILTER='GpuMlOps*'     the GPU tests memcheck runs (default: runtime, graphs,
#                                        module, op suite and attention)
set -uo pipefail
cd "$(dirname "$0")/.."
stages=" ${KILN_GPU_STAGES:-tests stress memcheck tsan python cpu conformance bench} "
want() { [[ $stages == *" $1 "* ]]; }
out=${OUT:-build-gpu/out}
mkdir -p "$out"
python=$(command -v python3)
jobs=$(nproc)

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

echo "== build =="
python_options=()
# The GPU machine has no libxxhash-dev: its header travels in .carry/xxhash (see docs/gpu.md).
[[ -f .carry/xxhash/xxhash.h ]] && python_options+=(-DKILN_XXHASH_INCLUDE_DIR="$PWD/.carry/xxhash")
# Nor, maybe, the CLI's header-only libraries: their include folders travel in .carry/cli11 and .carry/nlohmann-json.
[[ -f .carry/cli11/CLI/CLI.hpp ]] && python_options+=(-DKILN_CLI11_INCLUDE_DIR="$PWD/.carry/cli11")
[[ -f .carry/nlohmann-json/nlohmann/json.hpp ]] && python_options+=(-DKILN_NLOHMANN_JSON_INCLUDE_DIR="$PWD/.carry/nlohmann-json")
carry_options=("${python_options[@]}")  # the header folders alone, for builds without the Python package
"$python" -c "import nanobind" 2>/dev/null && python_options+=(-DKILN_BUILD_PYTHON=ON -DPython_EXECUTABLE="$python")
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$python" "${python_options[@]}" >"$out/configure.log" 2>&1 ||
  { tail -n 40 "$out/configure.log"; exit 1; }
if [[ ${KILN_PYTHON_ONLY:-0} == 1 ]]; then  # just the Python package and its tests (pytest arguments from $KILN_PYTEST_ARGS)
  cmake --build build-gpu --target _C kiln_python_package -j "$jobs" >"$out/build.log" 2>&1 || { grep -E "error|Error" -A3 "$out/build.log" | head -60; exit 1; }
  PYTHONPATH="$PWD/build-gpu/python" "$python" -m pytest -q -p no:logging --tb=short ${KILN_PYTEST_ARGS:-python/tests} 2>&1 | tee "$out/python-tests.log" | grep -E "^E |^(FAILED|ERROR)|passed|failed|^python/tests.*:[0-9]+:" | head -80
  exit "${PIPESTATUS[0]}"
fi
cmake --build build-gpu -j "$jobs" >"$out/build.log" 2>&1 || { grep -E "error|Error" -A3 "$out/build.log" | head -60; exit 1; }

run_dynamic_bench() {
  PYTHONUNBUFFERED=1 "$python" bench/dynamic.py --kiln build-gpu/tools/kiln/kiln \
    --floor build-gpu/bench/floor/kiln_cold_start_floor --out "$out" ${KILN_DYNAMIC_ARGS:-} 2>&1 | tee "$out/dynamic.log" | tail -n 30
}

if [[ ${KILN_BENCH_ONLY:-0} == 1 ]]; then
  PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/build-gpu/python" "$python" bench/bench.py --kiln build-gpu/tools/kiln/kiln --busy build-gpu/bench/busy/kiln_gpu_busy --out "$out" ${KILN_BENCH_ARGS:-} 2>&1 | tee "$out/bench.log" | tail -n 60
  exit 0
fi
if [[ ${KILN_DYNAMIC_ONLY:-0} == 1 ]]; then
  run_dynamic_bench
  exit 0
fi

gpu_tests_rc="not run"
if want tests; then
  echo "== GPU test suite =="
  if [[ -n ${KILN_GPU_TEST_FILTER:-} ]]; then
    build-gpu/tests/kiln_gpu_tests --gtest_filter="$KILN_GPU_TEST_FILTER" >"$out/gpu-tests.log" 2>&1
    gpu_tests_rc=$?
    grep -E "^\[  (PASSED|FAILED) |Failure" "$out/gpu-tests.log" | head -60
  else
    ctest --test-dir build-gpu -L kiln_gpu_tests -E GpuStress --output-on-failure -j 1 >"$out/gpu-tests.log" 2>&1
    gpu_tests_rc=$?
    grep -E "tests passed|FAILED|Failure|error" "$out/gpu-tests.log" | head -60
  fi
fi

stress="not run" stress_calls=0 stress_mismatches=0
if want stress; then
  echo "== graphs under pressure: the randomized stress tests =="
  build-gpu/tests/kiln_gpu_tests --gtest_filter='GpuStress*' >"$out/stress.log" 2>&1
  stress="rc $? ($(grep -E '^\[  (PASSED|FAILED) ' "$out/stress.log" | tr '\n' ' '))"
  grep -E "^stress:|Failure|FAILED" "$out/stress.log" | cut -c1-400 | head -30
  stress_calls=$(grep -oE "^stress: [^:]+: [0-9]+ calls" "$out/stress.log" | grep -oE "[0-9]+ calls" | awk '{s+=$1} END {print s+0}')
  stress_mismatches=$(grep -oE "[0-9]+ mismatches" "$out/stress.log" | awk '{s+=$1} END {print s+0}')
fi

echo "== GPU runtime, graph, module and ops tests under compute-sanitizer memcheck =="
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
memcheck="not run (no compute-sanitizer)"
want memcheck || memcheck="not run"
memcheck_stress="$memcheck"
if [[ -x $sanitizer ]] && want memcheck; then
  "$sanitizer" --tool memcheck --error-exitcode 9 build-gpu/tests/kiln_gpu_tests --gtest_filter="${KILN_MEMCHECK_FILTER:-GpuRuntime*:GraphFixture*:Module*:*GpuOps*:GpuAttention*}" \
    >"$out/memcheck.log" 2>&1
  memcheck="rc $? ($(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -n 1); $(grep -E '^\[  (PASSED|FAILED) ' "$out/memcheck.log" | tr '\n' ' '))"
  echo "$memcheck"
  # The stress tests, scaled down: memcheck serializes every launch.
  KILN_STRESS_SCALE=${KILN_MEMCHECK_STRESS_SCALE:-0.03} KILN_STRESS_SEEDS=7 "$sanitizer" --tool memcheck --error-exitcode 9 \
    build-gpu/tests/kiln_gpu_tests --gtest_filter='GpuStress*' >"$out/memcheck-stress.log" 2>&1
  memcheck_stress="rc $? ($(grep -E 'ERROR SUMMARY' "$out/memcheck-stress.log" | tail -n 1); $(grep -E '^\[  (PASSED|FAILED) ' "$out/memcheck-stress.log" | tr '\n' ' '))"
  echo "stress under memcheck: $memcheck_stress"
fi

echo "== the host race detector (ThreadSanitizer) over the threaded and stress tests =="
tsan="not run (KILN_SKIP_TSAN=1)"
want tsan || tsan="not run"
if [[ ${KILN_SKIP_TSAN:-0} != 1 ]] && want tsan; then
  tsan="not run (build failed: $out/tsan-build.log)"
  if cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_BUILD_PYTHON=OFF -DPython3_EXECUTABLE="$python" \
       -DCMAKE_CXX_FLAGS=-fsanitize=thread -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread \
       "${carry_options[@]}" >"$out/tsan-build.log" 2>&1 &&
     cmake --build build-tsan --target kiln_gpu_tests -j "$jobs" >>"$out/tsan-build.log" 2>&1; then
    KILN_STRESS_SCALE=${KILN_TSAN_STRESS_SCALE:-0.3} KILN_STRESS_SEEDS=7 \
      TSAN_OPTIONS="halt_on_error=0 suppressions=$PWD/tests/gpu/thread_sanitizer.supp" \
      build-tsan/tests/kiln_gpu_tests --gtest_filter='GpuStress*:*Thread*' >"$out/tsan.log" 2>&1
    tsan="rc $? ($(grep -c 'WARNING: ThreadSanitizer' "$out/tsan.log") reports; $(grep -E '^\[  (PASSED|FAILED) ' "$out/tsan.log" | tr '\n' ' '))"
    grep -A12 "WARNING: ThreadSanitizer" "$out/tsan.log" | head -40
  fi
  echo "$tsan"
fi

echo "== Python package tests (GPU and CPU) =="
python_tests="not run (no extension built)"
if [[ -d build-gpu/python/kiln && ${KILN_SKIP_PYTHON_TESTS:-0} != 1 ]] && want python; then  # KILN_PYTHON_ONLY=1 runs them alone
  PYTHONPATH="$PWD/build-gpu/python" "$python" -m pytest -q python/tests >"$out/python-tests.log" 2>&1
  python_tests="rc $? ($(tail -n 1 "$out/python-tests.log"))"
  grep -E "^(FAILED|ERROR)" "$out/python-tests.log" | head -20
  echo "$python_tests"
fi

cpu_tests_rc="not run"
if want cpu; then
  echo "== CPU test suites =="
  ctest --test-dir build-gpu -LE kiln_gpu_tests -E "onnx_conformance|onnx_node_tests|CompileForArch" -j "$jobs" >"$out/cpu-tests.log" 2>&1
  cpu_tests_rc=$?
  tail -n 3 "$out/cpu-tests.log"
fi

node_dir=/usr/share/libonnx-testdata/data/node
if [[ ! -d $node_dir && -f .carry/onnx-node.tar.xz ]]; then
  mkdir -p /tmp/onnx-data && tar xJf .carry/onnx-node.tar.xz -C /tmp/onnx-data
  node_dir=/tmp/onnx-data/node
fi
package_node_dir=build-gpu/onnx-node-tests
"$python" scripts/onnx_node_tests.py "$package_node_dir" >"$out/onnx-node-tests.log" 2>&1 || tail -n 5 "$out/onnx-node-tests.log"
onnx_version=$(cat "$package_node_dir/ONNX_VERSION" 2>/dev/null || echo "?")
declare -A conformance
# run_conformance SET DIR: the node tests of DIR on the GPU (generic and specialized
# kernels) and on the CPU; logs conformance-SET-{cuda,cuda-specialized,cpu}.log.
run_conformance() {
  local set=$1 dir=$2
  for run in cuda cuda-specialized cpu; do conformance[$set-$run]="not run (no node tests)"; done
  want conformance || { for run in cuda cuda-specialized cpu; do conformance[$set-$run]="not run"; done; return 0; }
  [[ -d $dir ]] || return 0
  echo "== conformance on the GPU: $set =="
  build-gpu/tools/kiln/kiln conformance "$dir" --device cuda --verbose >"$out/conformance-$set-cuda.log" 2>&1
  grep -E "^FAIL" "$out/conformance-$set-cuda.log" | cut -c1-300 | head -40
  echo "-- what the GPU runtime does not run yet (tests) --"
  grep -oE "cannot run: .*" "$out/conformance-$set-cuda.log" | sed -E 's/ x[0-9]+//g' | sort | uniq -c | sort -rn | head -25
  grep -E "^slowest cases" "$out/conformance-$set-cuda.log"
  conformance[$set-cuda]=$(tail -n 1 "$out/conformance-$set-cuda.log")
  build-gpu/tools/kiln/kiln conformance "$dir" --device cuda --specialized >"$out/conformance-$set-cuda-specialized.log" 2>&1
  grep -E "^FAIL" "$out/conformance-$set-cuda-specialized.log" | cut -c1-300 | head -20
  conformance[$set-cuda-specialized]=$(tail -n 1 "$out/conformance-$set-cuda-specialized.log")
  build-gpu/tools/kiln/kiln conformance "$dir" --device cpu >"$out/conformance-$set-cpu.log" 2>&1
  conformance[$set-cpu]=$(tail -n 1 "$out/conformance-$set-cpu.log")
}
run_conformance debian "$node_dir"
run_conformance "onnx-$onnx_version" "$package_node_dir"

bench_table="(benchmarks not run)"
if [[ -f bench/bench.py && ${KILN_SKIP_BENCH:-0} != 1 ]] && want bench; then
  echo "== benchmarks =="
  PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/build-gpu/python" "$python" bench/bench.py --kiln build-gpu/tools/kiln/kiln --busy build-gpu/bench/busy/kiln_gpu_busy --out "$out" 2>&1 | tee "$out/bench.log" | tail -n 40
  bench_table=$(cat "$out/bench-table.txt" 2>/dev/null || echo "(no table)")
  echo "== dynamic shapes and cold start =="
  run_dynamic_bench
  bench_table+=$'\n'$(cat "$out/dynamic-table.txt" 2>/dev/null || echo "(no dynamic table)")
fi

echo
echo "== summary ($(head -n 1 "$out/gpu.txt")) =="
printf '%-28s %s\n' "GPU test suite" "$(grep -E 'tests passed|^\[  (PASSED|FAILED) ' "$out/gpu-tests.log" 2>/dev/null | tail -n 1) (rc $gpu_tests_rc)"
printf '%-28s %s\n' "stress (graphs under pressure)" "$stress: $stress_calls calls, $stress_mismatches mismatches"
printf '%-28s %s\n' "memcheck (runtime/graphs/modules/ops)" "$memcheck"
printf '%-28s %s\n' "memcheck (stress, scaled down)" "$memcheck_stress"
printf '%-28s %s\n' "race detector (threads, stress)" "$tsan"
printf '%-28s %s\n' "Python tests" "$python_tests"
printf '%-28s %s\n' "CPU test suites" "$(grep -E 'tests passed' "$out/cpu-tests.log" 2>/dev/null | tail -n 1) (rc $cpu_tests_rc)"
for set in debian "onnx-$onnx_version"; do
  printf '%-28s %s\n' "conformance $set, cuda" "${conformance[$set-cuda]}"
  printf '%-28s %s\n' "  with specialized kernels" "${conformance[$set-cuda-specialized]}"
  printf '%-28s %s\n' "  cpu" "${conformance[$set-cpu]}"
done
echo "$bench_table"
