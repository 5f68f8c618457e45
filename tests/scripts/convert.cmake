# moeserve convert / synth from the command line (exit codes, messages, inspect on the output).
add_test(NAME convert_synth_cli
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/convert_cli.sh $<TARGET_FILE:moeserve> ${CMAKE_CURRENT_SOURCE_DIR}/fixtures)
set_tests_properties(convert_synth_cli PROPERTIES LABELS unit)
