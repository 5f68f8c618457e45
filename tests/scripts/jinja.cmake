# Chat templates and the Jinja interpreter against Python jinja2 configured as transformers
# configures it (the reference): real model templates x chat cases, feature snippets, and
# differential fuzzing of random templates.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME jinja_real_templates_vs_jinja2
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/jinja_reference.py
                   --binary $<TARGET_FILE:moeserve>
                   --templates ${CMAKE_SOURCE_DIR}/tests/fixtures/templates
                   --cases ${CMAKE_SOURCE_DIR}/tests/fixtures/chat/cases.json)
  add_test(NAME jinja_features_vs_jinja2
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/jinja_features.py
                   --binary $<TARGET_FILE:moeserve>
                   --features ${CMAKE_SOURCE_DIR}/tests/fixtures/jinja/features.txt
                   --context ${CMAKE_SOURCE_DIR}/tests/fixtures/jinja/context.json)
  add_test(NAME jinja_real_templates_random_chats_vs_jinja2
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/jinja_reference.py
                   --binary $<TARGET_FILE:moeserve>
                   --templates ${CMAKE_SOURCE_DIR}/tests/fixtures/templates --random 20 --seed 7)
  add_test(NAME jinja_fuzz_vs_jinja2
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/jinja_fuzz.py
                   --binary $<TARGET_FILE:moeserve> --seed 1 --count 300)
  set_tests_properties(jinja_real_templates_vs_jinja2 jinja_features_vs_jinja2 PROPERTIES LABELS unit TIMEOUT 300)
  set_tests_properties(jinja_real_templates_random_chats_vs_jinja2 jinja_fuzz_vs_jinja2 PROPERTIES LABELS slow TIMEOUT 600)
endif()

# The chat-template unit tests alone, for the sanitizer build of jinja_fuzz.sh (not built by default).
add_executable(jinja_unit_tests EXCLUDE_FROM_ALL ${CMAKE_CURRENT_LIST_DIR}/../unit/test_chat_template.cpp
                                                 ${CMAKE_CURRENT_LIST_DIR}/../unit/test_jinja_robustness.cpp)
target_link_libraries(jinja_unit_tests PRIVATE moeserve_lib GTest::gtest GTest::gtest_main)
target_compile_definitions(jinja_unit_tests PRIVATE
  MOESERVE_TEST_FIXTURES="${CMAKE_SOURCE_DIR}/tests/fixtures"
  MOESERVE_SPEC_DIR="${CMAKE_SOURCE_DIR}/tests/fixtures/spec")
moeserve_warnings(jinja_unit_tests)

# Slow: those unit tests under ASan + UBSan, then ~20 s of libFuzzer on templates. The sanitizer
# build dir is shared with gguf_fuzz_and_sanitizers, so the two never run at once.
add_test(NAME jinja_fuzz_and_sanitizers
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/jinja_fuzz.sh ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}/fuzz-asan 20)
set_tests_properties(jinja_fuzz_and_sanitizers PROPERTIES LABELS slow TIMEOUT 1200 RESOURCE_LOCK fuzz-asan-build)
if(TEST gguf_fuzz_and_sanitizers)
  set_tests_properties(gguf_fuzz_and_sanitizers PROPERTIES RESOURCE_LOCK fuzz-asan-build)
endif()
