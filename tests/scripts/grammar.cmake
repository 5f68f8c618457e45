# The grammars of constrained output (JSON schema, json_object, tool calls) against Python's json
# module and tool calls rendered by jinja2 through the real chat templates.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME grammar_vs_python_json
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/grammar_reference.py $<TARGET_FILE:moeserve>
                   ${CMAKE_SOURCE_DIR}/tests/fixtures/templates)
  set_tests_properties(grammar_vs_python_json PROPERTIES LABELS unit)
endif()
