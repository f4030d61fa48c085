#pragma once

namespace kiln {
inline constexpr const char* kVersion = "0.2.0";
}  // namespace kiln
