#!/usr/bin/env python3
"""Records the real Cerbos 0.55's answers to CEL expressions through `cerbos repl`.

Usage: repl_answers.py EXPRESSIONS.txt > ANSWERS.json

EXPRESSIONS.txt holds one expression per line; backslashes inside string literals must be
written as `\\x5c` (the repl reads a trailing backslash as a line continuation). The output is
a JSON list of `[expression, answer]` pairs in the form `src/cel/corners.rs` replays:
`value: <the repl's rendering of the value>` or `error: <message>`. Set CERBOS_BIN to use
another binary than the one `tests/diff/run.sh` installs.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_BIN = os.path.join(
    ROOT, ".tools/cerbos/node_modules/@cerbos/cerbos-linux-x64/cerbos-linux-x64"
)
ERROR_HEAD = "Error: Failed to process input"


def answers(exprs, cerbos):
    """The repl's answer to each expression, in order."""
    script = "".join(e + "\n" for e in exprs) + ":q\n"
    out = subprocess.run(
        [cerbos, "repl"], input=script, capture_output=True, text=True, timeout=600
    ).stdout
    # Each answer follows a `-> ` prompt; the banner comes before the first one.
    chunks = out.split("\n-> ")[1:]
    result = []
    for chunk in chunks:
        lines = [l for l in chunk.split("\n") if l.strip()]
        if not lines:
            continue
        head = lines[0]
        if head.startswith("_ = "):
            result.append("value: " + head[len("_ = "):])
        elif head.startswith(ERROR_HEAD):
            result.append("error: " + lines[1].strip())
        else:
            raise SystemExit(f"unexpected repl output: {chunk!r}")
    if len(result) != len(exprs):
        raise SystemExit(f"{len(exprs)} expressions but {len(result)} answers")
    return result


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        exprs = [l.rstrip("\n") for l in f if l.strip()]
    cerbos = os.environ.get("CERBOS_BIN", DEFAULT_BIN)
    pairs = [[e.replace("\\x5c", "\\\\"), a] for e, a in zip(exprs, answers(exprs, cerbos))]
    # One pair a line, so that a re-recording diffs line by line.
    lines = ",\n".join(json.dumps(p, ensure_ascii=False) for p in pairs)
    sys.stdout.write("[\n" + lines + "\n]\n")


if __name__ == "__main__":
    main()
