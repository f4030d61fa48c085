#include "kiln/bytes.h"

#include <xxhash.h>

namespace kiln {

uint64_t checksum64(std::string_view data) { return XXH3_64bits(data.data(), data.size()); }

}  // namespace kiln
