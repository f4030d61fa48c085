// Importer tests: loading a model must fail with a given code and message.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>

#include "kiln/error.h"
#include "kiln/onnx.h"
#include "model_builder.h"

namespace kiln::testing {

// Loading `m` fails with `code` and a message holding every needle.
inline void expect_load_error(const ModelBuilder& m, ErrorCode code, std::initializer_list<std::string> needles) {
  try {
    kiln::onnx::load_model_bytes(m.bytes());
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const std::string& needle : needles) EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace kiln::testing
