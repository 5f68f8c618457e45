// llama-server flags beyond the ones `moeserve serve` acts on: those that change nothing here are
// accepted with a notice, those that ask for what moeserve does not do stop with one error saying
// why, so that a user's existing command line either runs or names the flag that stops it.
#pragma once

#include <string_view>

namespace moeserve::server {

enum class FlagValue {
  none,      // a switch
  required,  // takes the next argument (or --flag=value)
  optional,  // takes the next argument when it does not start with '-' (e.g. --fit [on|off])
};

struct CompatFlag {
  std::string_view names;  // every spelling, space-separated
  FlagValue value;
  bool accepted;           // true: no effect here (a notice); false: an error
  std::string_view why;
};

// The entry for `flag` (one spelling, without "=value"), or null when it is not one of them.
const CompatFlag* compat_flag(std::string_view flag);

}  // namespace moeserve::server
