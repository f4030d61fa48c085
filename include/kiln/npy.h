// NumPy .npy files (format 1.0/2.0/3.0) for tensors. Reading takes C or
// Fortran order (converted to row-major) and either byte order (converted to
// little-endian); bool bytes other than 0 are read as 1 (true), as numpy does.
// The header is parsed strictly: at most 64 KiB, exactly the keys 'descr',
// 'fortran_order' and 'shape', dims of decimal digits, data bytes that match
// the shape exactly. Any defect is a kiln::Error naming the file.
// String tensors are numpy's fixed-width text: read from 'U<n>' (UTF-32,
// converted to UTF-8) or 'S<n>' (bytes), their NUL padding dropped, and
// written as '<U<n>'. Object arrays ('O', pickled) are refused.
#pragma once

#include <filesystem>

#include "kiln/export.h"
#include "kiln/ir/network.h"

KILN_API_BEGIN
namespace kiln::io {

ir::TensorData read_npy(const std::filesystem::path& path);
ir::TensorData parse_npy(const std::string& bytes, const std::string& label = "npy data");
void write_npy(const std::filesystem::path& path, const ir::TensorData& tensor);
// The dtype a tensor of `dtype` reads back as: itself, but for the narrow
// types numpy lacks (float8, float4e2m1, int4, uint4, int2, uint2), whose
// bytes are written as uint8, or int8 for int4 and int2.
DType npy_read_back_dtype(DType dtype);

}  // namespace kiln::io
KILN_API_END
