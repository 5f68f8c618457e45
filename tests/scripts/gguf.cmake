# GGUF container tests beyond the unit binary.

# test_inspect_cli.cpp runs the built binary.
add_dependencies(moeserve_unit_tests moeserve)

# Interoperability with Hugging Face's @huggingface/gguf (npm, tests/clients): our files through
# their parser, their files through `moeserve inspect`.
add_executable(gguf_write_samples ${CMAKE_CURRENT_LIST_DIR}/gguf_write_samples.cpp)
target_link_libraries(gguf_write_samples PRIVATE moeserve_lib)
moeserve_warnings(gguf_write_samples)
find_program(NODE_EXECUTABLE node)
if(NODE_EXECUTABLE)
  add_test(NAME gguf_interop_huggingface
           COMMAND ${NODE_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/gguf_interop.mjs
                   $<TARGET_FILE:gguf_write_samples> $<TARGET_FILE:moeserve>)
else()
  add_test(NAME gguf_interop_huggingface COMMAND sh -c "echo 'node is not installed: run scripts/setup.sh'; exit 1")
endif()
set_tests_properties(gguf_interop_huggingface PROPERTIES LABELS unit)

# The GGUF unit tests alone, for the sanitizer build of gguf_fuzz.sh (not built by default).
file(GLOB GGUF_UNIT_TEST_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/../unit/test_gguf_*.cpp)
add_executable(gguf_unit_tests EXCLUDE_FROM_ALL ${GGUF_UNIT_TEST_SOURCES})
target_link_libraries(gguf_unit_tests PRIVATE moeserve_lib GTest::gtest GTest::gtest_main)
moeserve_warnings(gguf_unit_tests)

# Slow: the GGUF unit tests under ASan + UBSan, then ~20 s of libFuzzer on the reader.
add_test(NAME gguf_fuzz_and_sanitizers
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/gguf_fuzz.sh ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}/fuzz-asan
                 $<TARGET_FILE:gguf_write_samples> 20)
set_tests_properties(gguf_fuzz_and_sanitizers PROPERTIES LABELS slow TIMEOUT 1200)
