#!/usr/bin/env python3
"""The bundled demo model does what the README promises: greedy continuation of
`def fibonacci(n):` looks like Python (an indented body whose lines Python's own tokenizer reads,
with Python keywords), and in a ChatML turn it answers and ends the turn with <|im_end|> well
before the length limit.

usage: demo_model_check.py MOESERVE_BINARY MODEL.gguf
"""
import io
import re
import subprocess
import sys
import tokenize

binary, model = sys.argv[1], sys.argv[2]


def run(prompt, n):
    p = subprocess.run([binary, "run", "-m", model, "-p", prompt, "-n", str(n), "--temp", "0", "-t", "2"],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        sys.exit(f"moeserve run failed ({p.returncode}):\n{p.stderr}")
    generated = int(re.search(r"generation: (\d+) tokens", p.stderr).group(1))
    return p.stdout, generated


KEYWORDS = {"def", "return", "if", "elif", "else", "for", "while", "in", "import", "from", "raise", "class",
            "try", "except", "with", "yield", "not", "and", "or", "is", "None", "True", "False", "self"}


def line_reads_as_python(line):
    """Python's tokenizer reads the line alone without an error token (a bracket or string left
    open at the end of the line is fine: statements span lines)."""
    kinds = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline):
            kinds.append((tok.type, tok.string))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return bool(kinds) and all(k != tokenize.ERRORTOKEN for k, _ in kinds), {s for _, s in kinds}


text, _ = run("def fibonacci(n):", 80)
source = "def fibonacci(n):" + text
print(source)
# Generation stops mid-line: judge the complete lines.
lines = [line for line in source.splitlines()[:-1] if line.strip()]
verdicts = [line_reads_as_python(line) for line in lines]
readable = [line for line, (ok, _) in zip(lines, verdicts) if ok]
with_keywords = [line for line, (_, tokens) in zip(lines, verdicts) if tokens & KEYWORDS]
if len(lines) < 4 or len(readable) < 0.7 * len(lines):
    sys.exit(f"only {len(readable)} of {len(lines)} lines read as Python")
if not any(line.startswith((" ", "\t")) for line in lines[1:]):
    sys.exit("continuation has no indented body")
if len(with_keywords) < 2:
    sys.exit("continuation has almost no Python keywords")

limit = 400
answer, generated = run("<|im_start|>user\nWrite a Python function that checks whether a number is prime.<|im_end|>\n"
                        "<|im_start|>assistant\n", limit)
print(answer)
if generated >= limit:
    sys.exit(f"the chat answer did not end its turn within {limit} tokens")
print(f"ok: chat turn ended after {generated} tokens")
