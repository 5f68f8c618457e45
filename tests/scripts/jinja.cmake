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
