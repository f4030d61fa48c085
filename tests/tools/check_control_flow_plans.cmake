# The ONNX node tests whose control flow decides by data (an If on an input, a
# Loop of a data trip count, Scan-8 over a batch): `kiln build` keeps the
# control flow and builds its subgraphs, and `kiln inspect` reports every node
# of the plan runnable on the GPU. Tensors whose size depends on the iteration
# count get a bound, as a user gives one. A case whose model the set lacks is skipped.
#   cmake -DKILN=build/tools/kiln/kiln -DNODE_TESTS=<dir> -DOUT=<dir> -P tests/tools/check_control_flow_plans.cmake
set(cases
    "test_if:If"
    "test_loop11:Loop:res_y=64:res_scan=64:slice_out=64"
    "test_scan_sum:Scan"
    "test_range_float_type_positive_delta_expanded:Loop:output=64"
    "test_range_int32_type_negative_delta_expanded:Loop:output=64"
    "test_range_float16_type_positive_delta_expanded:Loop:Range_test_range_float16_type_positive_delta_expanded_function_output_s=64"
    "test_range_bfloat16_type_positive_delta_expanded:Loop:Range_test_range_bfloat16_type_positive_delta_expanded_function_output_s=64")
file(MAKE_DIRECTORY "${OUT}")
set(checked 0)
foreach(case IN LISTS cases)
  string(REPLACE ":" ";" parts "${case}")
  list(POP_FRONT parts name op)
  set(model "${NODE_TESTS}/${name}/model.onnx")
  if(NOT EXISTS "${model}")
    continue()
  endif()
  set(bounds)
  foreach(bound IN LISTS parts)
    list(APPEND bounds --data-dependent-bound "${bound}")
  endforeach()
  execute_process(COMMAND "${KILN}" build "${model}" -o "${OUT}/${name}.kiln" ${bounds} RESULT_VARIABLE rc ERROR_VARIABLE log
                  OUTPUT_QUIET)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "kiln build ${name} exited with ${rc}:\n${log}")
  endif()
  execute_process(COMMAND "${KILN}" inspect "${OUT}/${name}.kiln" --json RESULT_VARIABLE rc OUTPUT_VARIABLE json ERROR_QUIET)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "kiln inspect ${name} exited with ${rc}")
  endif()
  string(JSON kept ERROR_VARIABLE missing GET "${json}" kernel_histogram ${op})
  if(missing)
    message(FATAL_ERROR "${name}: the plan holds no ${op}: kiln build was to keep it")
  endif()
  string(JSON nodes GET "${json}" gpu_support nodes)
  string(JSON supported GET "${json}" gpu_support supported)
  if(NOT nodes EQUAL supported)
    string(JSON unsupported GET "${json}" gpu_support unsupported)
    message(FATAL_ERROR "${name}: the GPU runs ${supported} of ${nodes} nodes: ${unsupported}")
  endif()
  math(EXPR checked "${checked} + 1")
endforeach()
if(checked EQUAL 0)
  message(FATAL_ERROR "none of the cases is in ${NODE_TESTS}")
endif()
message(STATUS "${checked} plans of control flow, every node on the GPU")
