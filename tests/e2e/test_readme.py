"""Issue 18: every Python snippet of README.md runs as pasted (against the e2e Gatehouse
instead of 127.0.0.1:3592), and prints what its last comment line says."""

from __future__ import annotations

import contextlib
import io
import re

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
