# `moeserve types` lists the registry: a K-quant row with its sizes and dot-product type, and an
# i-quant row with reference dequantize but no quantizer.
add_test(NAME cli_types COMMAND moeserve types)
set_tests_properties(cli_types PROPERTIES LABELS unit
  PASS_REGULAR_EXPRESSION "12 +Q4_K +256 +144 +4\\.5000 +yes +yes +Q8_K.*16 +IQ2_XXS +256 +66 +2\\.0625 +yes +- +Q8_K")
