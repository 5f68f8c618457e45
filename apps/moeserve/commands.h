// The subcommands of the one `moeserve` binary. Each takes the arguments after its name (argv[0] is
// the subcommand's name) and returns the process exit code; user errors are thrown as
// moeserve::Error, which main() prints and turns into exit code 1.
#pragma once

namespace moeserve::cli {

int cmd_types(int argc, char** argv);
int cmd_devices(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_inspect(int argc, char** argv);
int cmd_convert(int argc, char** argv);
int cmd_synth(int argc, char** argv);
int cmd_run(int argc, char** argv);
int cmd_perplexity(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_template(int argc, char** argv);
int cmd_parse_output(int argc, char** argv);
int cmd_grammar(int argc, char** argv);
int cmd_serve(int argc, char** argv);
int cmd_quantize(int argc, char** argv);

}  // namespace moeserve::cli
