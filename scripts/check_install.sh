#!/usr/bin/env bash
# kiln as a C++ consumer sees it: builds, installs into a temporary prefix,
# checks that nothing installed names the source tree and that libkiln.so
# exports no third-party symbols, then, against that prefix only, builds
# examples/cpp with find_package(kiln), compiles every public header on its
# own with pkg-config's flags, and links and runs a one-line program (it needs
# no GPU). Uses build/ (or $KILN_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${KILN_BUILD_DIR:-build}
bash scripts/build.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
cmake --install "$build_dir" --prefix "$prefix" --component kiln >/dev/null
libkiln=$(find "$prefix" -name libkiln.so -print -quit)
libdir=$(dirname "$libkiln")
echo "installed: $(find "$prefix/include/kiln" -name '*.h' | wc -l) headers, $(cd "$prefix" && find . -type f ! -path './include/*' | sort | tr '\n' ' ')"

# Nothing installed may point back into the source or build tree.
if grep -rlF -e "$PWD" "$prefix/include" "$libdir/cmake" "$libdir/pkgconfig"; then
  echo "check_install: the files above name $PWD" >&2
  exit 1
fi
# Only kiln's API is exported: no protobuf, ONNX schema or xxHash symbols.
leaked=$(nm -D --defined-only "$libkiln" | c++filt | grep -E " (google::|onnx::|XXH)" || true)
if [[ -n $leaked ]]; then
  echo "check_install: libkiln.so exports private symbols:" >&2
  head -n 20 <<<"$leaked" >&2
  exit 1
fi
echo "libkiln.so: $(readelf -d "$libkiln" | grep -oP 'SONAME.*\[\K[^]]+'), $(nm -D --defined-only "$libkiln" | wc -l) exported symbols"

# The CMake package: the example, configured on its own.
cmake -S examples/cpp -B "$work/example" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/example" >/dev/null
echo "examples/cpp: built $(basename "$(find "$work/example" -name kiln_example -type f)") with find_package(kiln)"

# pkg-config: each public header alone, warning-free, then a program.
export PKG_CONFIG_PATH=$libdir/pkgconfig
cflags=$(pkg-config --cflags kiln)
libs=$(pkg-config --libs kiln)
echo "pkg-config kiln $(pkg-config --modversion kiln): $cflags $libs"
for header in $(cd "$prefix/include" && find kiln -name '*.h' | sort); do
  # shellcheck disable=SC2086  # the flags are words
  echo "#include <$header>" | c++ -std=c++20 -Wall -Wextra -Werror $cflags -fsyntax-only -x c++ - ||
    { echo "check_install: $header does not compile on its own against the installed headers" >&2; exit 1; }
done
cat >"$work/hello.cpp" <<'EOF'
#include <kiln/runtime.h>
#include <kiln/version.h>
#include <cstdio>
int main() { std::string why; bool gpu = kiln::runtime::cuda_available(&why); std::printf("kiln %s, NVRTC %d, GPU: %s\n", kiln::kVersion, kiln::runtime::compiler_version(), gpu ? "yes" : why.c_str()); }
EOF
# shellcheck disable=SC2086
c++ -std=c++20 $cflags "$work/hello.cpp" -o "$work/hello" $libs
LD_LIBRARY_PATH=$libdir "$work/hello"
