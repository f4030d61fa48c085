# Locates onnx.proto from the installed ONNX distribution, generates its C++
# bindings with protoc, and records the newest opset that distribution knows.
find_package(Protobuf REQUIRED)
find_package(Python3 COMPONENTS Interpreter)

set(_onnx_probe "import onnx,os;print(os.path.dirname(onnx.__file__));print(onnx.defs.onnx_opset_version())")
set(_onnx_pythons ${Python3_EXECUTABLE} /usr/bin/python3)
foreach(_py IN LISTS _onnx_pythons)
  if(NOT PY_ONNX_DIR AND EXISTS "${_py}")
    execute_process(COMMAND ${_py} -c "${_onnx_probe}" OUTPUT_VARIABLE _out ERROR_QUIET RESULT_VARIABLE _rc
                    OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(_rc EQUAL 0)
      string(REPLACE "\n" ";" _out "${_out}")
      list(GET _out 0 PY_ONNX_DIR)
      list(GET _out 1 KILN_ONNX_MAX_OPSET)
      set(KILN_PYTHON_WITH_ONNX ${_py})
    endif()
  endif()
endforeach()

find_file(ONNX_PROTO onnx.proto PATHS /usr/include/onnx ${PY_ONNX_DIR} /usr/lib/python3/dist-packages/onnx
          NO_DEFAULT_PATH)
if(NOT ONNX_PROTO OR NOT KILN_ONNX_MAX_OPSET)
  list(JOIN _onnx_pythons ", " _onnx_pythons)
  message(FATAL_ERROR "kiln: the ONNX schema (onnx.proto) and its newest opset come from the Python package 'onnx', "
                      "which no python3 here can import (tried: ${_onnx_pythons}). Install it: "
                      "`apt-get install python3-onnx` (Debian/Ubuntu) or `python3 -m pip install onnx`; "
                      "or point -DPython3_EXECUTABLE at a python3 that has it.")
endif()
message(STATUS "kiln: onnx.proto at ${ONNX_PROTO}; newest opset ${KILN_ONNX_MAX_OPSET}")

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
