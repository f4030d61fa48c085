// What libkiln.so exports. kiln is compiled with -fvisibility=hidden, so only
// declarations between KILN_API_BEGIN and KILN_API_END (the public headers'
// contents) are visible to programs that link it; everything else, including
// the protobuf, NVRTC, cuBLASLt and cuDNN code inside, stays private.
#pragma once

#define KILN_API_BEGIN _Pragma("GCC visibility push(default)")
#define KILN_API_END _Pragma("GCC visibility pop")
