# Locates onnx.proto from an installed ONNX Python package and generates its
# C++ bindings with protoc. Of the candidate pythons (-DPython3_EXECUTABLE,
# the python3 on PATH, /usr/bin/python3), the one whose `onnx` knows the newest
# opset is used: Debian's python3-onnx lags PyPI's by years, and the newer
# package's node tests are what the conformance suite runs. Which ONNX opsets
# kiln imports does not depend on it (the front end states its own range,
# src/frontend/onnx/importer.h); onnx.proto only describes the file format.
find_package(Protobuf REQUIRED)
find_package(Python3 COMPONENTS Interpreter)

set(_onnx_probe "import onnx,os;print(os.path.dirname(onnx.__file__));print(onnx.defs.onnx_opset_version());print(onnx.__version__)")
find_program(KILN_PATH_PYTHON3 python3)
set(_onnx_pythons ${Python3_EXECUTABLE} ${KILN_PATH_PYTHON3} /usr/bin/python3)
list(REMOVE_DUPLICATES _onnx_pythons)
set(KILN_ONNX_PACKAGE_OPSET 0)
foreach(_py IN LISTS _onnx_pythons)
  if(EXISTS "${_py}")
    execute_process(COMMAND ${_py} -c "${_onnx_probe}" OUTPUT_VARIABLE _out ERROR_QUIET RESULT_VARIABLE _rc
                    OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(_rc EQUAL 0)
      string(REPLACE "\n" ";" _out "${_out}")
      list(GET _out 1 _opset)
      if(_opset GREATER KILN_ONNX_PACKAGE_OPSET)
        list(GET _out 0 PY_ONNX_DIR)
        list(GET _out 2 KILN_ONNX_PACKAGE_VERSION)
        set(KILN_ONNX_PACKAGE_OPSET ${_opset})
        set(KILN_PYTHON_WITH_ONNX ${_py})
      endif()
    endif()
  endif()
endforeach()

if(KILN_PYTHON_WITH_ONNX AND EXISTS "${PY_ONNX_DIR}/onnx.proto")
  set(ONNX_PROTO "${PY_ONNX_DIR}/onnx.proto")
else()
  list(JOIN _onnx_pythons ", " _onnx_pythons)
  message(FATAL_ERROR "kiln: the ONNX schema (onnx.proto) comes from the Python package 'onnx', "
                      "which no python3 here can import (tried: ${_onnx_pythons}). Install it: "
                      "`python3 -m pip install onnx` or `apt-get install python3-onnx` (Debian/Ubuntu); "
                      "or point -DPython3_EXECUTABLE at a python3 that has it.")
endif()
message(STATUS "kiln: ONNX schema from onnx ${KILN_ONNX_PACKAGE_VERSION} (opset ${KILN_ONNX_PACKAGE_OPSET}) "
               "of ${KILN_PYTHON_WITH_ONNX}: ${ONNX_PROTO}")

set(ONNX_GEN_DIR ${PROJECT_BINARY_DIR}/generated)
file(MAKE_DIRECTORY ${ONNX_GEN_DIR}/kiln_onnx)
configure_file(${ONNX_PROTO} ${ONNX_GEN_DIR}/kiln_onnx/onnx.proto COPYONLY)
add_custom_command(
  OUTPUT ${ONNX_GEN_DIR}/kiln_onnx/onnx.pb.cc ${ONNX_GEN_DIR}/kiln_onnx/onnx.pb.h
  COMMAND protobuf::protoc --cpp_out=${ONNX_GEN_DIR} -I ${ONNX_GEN_DIR} ${ONNX_GEN_DIR}/kiln_onnx/onnx.proto
  DEPENDS ${ONNX_GEN_DIR}/kiln_onnx/onnx.proto
  COMMENT "Generating C++ from onnx.proto")
add_library(kiln_onnx_proto STATIC ${ONNX_GEN_DIR}/kiln_onnx/onnx.pb.cc)
target_include_directories(kiln_onnx_proto SYSTEM PUBLIC ${ONNX_GEN_DIR})
target_link_libraries(kiln_onnx_proto PUBLIC protobuf::libprotobuf)
target_compile_options(kiln_onnx_proto PRIVATE -w)
set_target_properties(kiln_onnx_proto PROPERTIES POSITION_INDEPENDENT_CODE ON)
