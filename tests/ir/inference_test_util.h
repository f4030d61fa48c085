// What the shape-inference tests share: attributes from a list, and what a
// one-node network infers.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::ir::inference_test {

inline Attributes attrs(std::initializer_list<std::pair<const char*, AttrValue>> list) {
  Attributes a;
  for (auto& [name, value] : list) a.set(name, value);
  return a;
}

// The output of a one-node network as "dtype[dims]", or the error's message.
inline std::string outcome(Network& net, ValueId y) {
  net.add_output(y);
  try {
    net.finalize();
  } catch (const Error& e) {
    return e.what();
  }
  return str(dtype_name(net.value(y).dtype), shape_to_string(net.value(y).shape));
}

}  // namespace kiln::ir::inference_test
