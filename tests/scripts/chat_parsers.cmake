# The reply parser against the real chat templates rendered by Python jinja2: tool calls rendered
# the way the model is trained to emit them must parse back to the same names, values and types.
find_package(Python3 REQUIRED COMPONENTS Interpreter)
add_test(NAME chat_template_roundtrip
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/chat_template_roundtrip.py
          $<TARGET_FILE:moeserve> ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/spec/templates 400)
set_tests_properties(chat_template_roundtrip PROPERTIES LABELS unit)
