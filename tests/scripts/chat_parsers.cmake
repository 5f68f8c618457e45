# The reply parser against the real chat templates rendered by Python jinja2: tool calls rendered
# the way the model is trained to emit them must parse back to the same names, values and types.
find_package(Python3 REQUIRED COMPONENTS Interpreter)
add_test(NAME chat_template_roundtrip
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/chat_template_roundtrip.py
          $<TARGET_FILE:moeserve> ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/spec/templates 400)
set_tests_properties(chat_template_roundtrip PROPERTIES LABELS unit)

# The chat and sampler unit tests alone, for the sanitizer build of chat_fuzz.sh (not built by default).
file(GLOB CHAT_UNIT_TEST_SOURCES CONFIGURE_DEPENDS
     ${CMAKE_CURRENT_LIST_DIR}/../unit/test_chat_*.cpp ${CMAKE_CURRENT_LIST_DIR}/../unit/test_sampler*.cpp)
add_executable(chat_unit_tests EXCLUDE_FROM_ALL ${CHAT_UNIT_TEST_SOURCES})
target_link_libraries(chat_unit_tests PRIVATE moeserve_lib GTest::gtest GTest::gtest_main)
moeserve_warnings(chat_unit_tests)
# The chat-template tests among them read the spec fixtures and run the binary.
add_dependencies(chat_unit_tests moeserve)
target_compile_definitions(chat_unit_tests PRIVATE
  MOESERVE_TEST_FIXTURES="${CMAKE_SOURCE_DIR}/tests/fixtures"
  MOESERVE_SPEC_DIR="${CMAKE_SOURCE_DIR}/tests/fixtures/spec"
  MOESERVE_BINARY="$<TARGET_FILE:moeserve>")

# ASan/UBSan unit tests and libFuzzer on the reply parser. It shares the sanitizer build dir with
# the GGUF fuzz test, so the two never run at the same time.
add_test(NAME chat_fuzz_and_sanitizers
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/chat_fuzz.sh ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}/fuzz-asan 20)
set_tests_properties(chat_fuzz_and_sanitizers PROPERTIES LABELS slow TIMEOUT 1200
                     RESOURCE_LOCK fuzz_asan_build DEPENDS gguf_fuzz_and_sanitizers)
