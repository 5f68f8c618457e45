# moeserve serve against real clients: the openai and @anthropic-ai/sdk npm packages, and Claude
# Code's own binary (all from tests/clients, installed by scripts/setup.sh).
find_program(NODE_EXECUTABLE node)
set(MOESERVE_SERVER_TEST_ENV
    "MOESERVE_BINARY=$<TARGET_FILE:moeserve>"
    "MOESERVE_CLIENTS_DIR=${CMAKE_SOURCE_DIR}/tests/clients")
add_test(NAME server_api_clients
         COMMAND ${NODE_EXECUTABLE} --test --test-reporter=spec ${CMAKE_SOURCE_DIR}/tests/server/api_clients.test.mjs)
set_tests_properties(server_api_clients PROPERTIES LABELS unit ENVIRONMENT "${MOESERVE_SERVER_TEST_ENV}" TIMEOUT 600
                     RUN_SERIAL TRUE)
add_test(NAME server_claude_code
         COMMAND ${NODE_EXECUTABLE} --test --test-reporter=spec ${CMAKE_SOURCE_DIR}/tests/server/claude_code.test.mjs)
set_tests_properties(server_claude_code PROPERTIES LABELS slow ENVIRONMENT "${MOESERVE_SERVER_TEST_ENV}" TIMEOUT 1200
                     RUN_SERIAL TRUE)
add_test(NAME server_features
         COMMAND ${NODE_EXECUTABLE} --test --test-reporter=spec ${CMAKE_SOURCE_DIR}/tests/server/server_features.test.mjs)
set_tests_properties(server_features PROPERTIES LABELS unit ENVIRONMENT "${MOESERVE_SERVER_TEST_ENV}" TIMEOUT 900
                     RUN_SERIAL TRUE)
