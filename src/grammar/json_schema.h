// JSON Schema -> grammar, for `response_format` and tool arguments.
//
// Supported: type (a name or a list), properties / required / additionalProperties (false, true or
// a schema; absent means no other properties, as in llama.cpp's converter, so the model stays on
// the declared ones), items / minItems / maxItems, minLength / maxLength, enum, const, anyOf,
// oneOf (as anyOf: the alternatives are not checked for exclusivity), $ref to #, #/$defs/... and
// #/definitions/..., and boolean schemas. Annotations (title, description, default, examples,
// format, $schema, $id, $comment, ...) are ignored. Any other keyword is an error naming it.
//
// Properties come in declaration order, required ones always, optional ones optionally. Output
// shape limits that keep a generation finite: between tokens nothing, one space, or a line break
// with at most 20 spaces/tabs of indentation; integer parts of at most 16 digits, fractions of at
// most 16, exponents of at most 3.
#pragma once

#include <memory>

#include <nlohmann/json.hpp>

#include "grammar/grammar.h"

namespace moeserve::grammar {

// Adds rules for values matching `schema` to `builder` and returns a reference to them.
// `root` is the document that $refs resolve in. Errors: moeserve::Error naming the keyword and
// where in the schema it is.
Element compile_json_schema(GrammarBuilder& builder, const nlohmann::ordered_json& schema,
                            const nlohmann::ordered_json& root);

// Any JSON value (json_object mode wants an object: `object_only`).
Element json_value(GrammarBuilder& builder, bool object_only);

// Whitespace between JSON tokens (bounded).
Element json_space(GrammarBuilder& builder);

// A whole grammar: optional leading text is not allowed; the value, then nothing.
std::shared_ptr<const Grammar> json_schema_grammar(const nlohmann::ordered_json& schema);

}  // namespace moeserve::grammar
