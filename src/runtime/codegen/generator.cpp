// Values known on the host (shape arithmetic) written into device memory.
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"

namespace kiln::codegen {

std::string constants_source() {
  std::ostringstream s;
  s << prelude();
  s << "extern \"C\" __global__ void " << kEntry << "(unsigned char* __restrict__ out, KParams p) {\n"
    << params_binding<ConstantsParams>(std::nullopt);
  s << "  const long long n = prm.n, elem = prm.elem;\n";
  s << "  for (long long i = threadIdx.x; i < n; i += blockDim.x) {\n";
  s << "    const long long v = prm.values[i];\n";
  s << "    for (long long b = 0; b < elem; ++b) out[i * elem + b] = (unsigned char)((v >> (8 * b)) & 0xff);  // little-endian\n";
  s << "  }\n}\n";
  return s.str();
}

}  // namespace kiln::codegen
