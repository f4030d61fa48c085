// NumPy .npy files (format 1.0/2.0, C order, little-endian) for tensors.
#pragma once

#include <filesystem>

#include "kiln/ir/network.h"

namespace kiln::io {

ir::TensorData read_npy(const std::filesystem::path& path);
ir::TensorData parse_npy(const std::string& bytes, const std::string& label = "npy data");
void write_npy(const std::filesystem::path& path, const ir::TensorData& tensor);

}  // namespace kiln::io
