# The bundled demo model writes Python for `def fibonacci(n):` and ends its chat turns.
find_package(Python3 COMPONENTS Interpreter REQUIRED)
add_test(NAME demo_model_writes_python
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/demo_model_check.py
                 $<TARGET_FILE:moeserve> ${CMAKE_SOURCE_DIR}/models/moeserve-demo-qwen3next.gguf)
set_tests_properties(demo_model_writes_python PROPERTIES LABELS unit TIMEOUT 600)
