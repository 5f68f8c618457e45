# `moeserve types` lists the registry: a K-quant row with its sizes and dot-product type, an
# i-quant row (reference dequantize and quantizer), and the activation-only Q8_K (no dot product).
add_test(NAME cli_types COMMAND moeserve types)
set_tests_properties(cli_types PROPERTIES LABELS unit
  PASS_REGULAR_EXPRESSION "12 +Q4_K +256 +144 +4\\.5000 +yes +yes +Q8_K.*15 +Q8_K +256 +292 +9\\.1250 +yes +yes +- .*16 +IQ2_XXS +256 +66 +2\\.0625 +yes +yes +Q8_K")
