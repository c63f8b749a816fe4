"""Routes from the example app's real OpenAPI document (FastAPI generates it; the app
declares x-gatehouse-action / x-gatehouse-public through `openapi_extra` and the resource
kind through its tags): `gatehouse routes import` gives the routes gatehouse.yaml writes by
hand, and `gatehouse routes check` reports what no policy covers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

import stack


@pytest.fixture(scope="module")
def openapi(tmp_path_factory) -> Path:
    import app as documents_app  # examples/fastapi/app.py (on sys.path via conftest)

    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_text(json.dumps(documents_app.app.openapi()))
    return path


def _gatehouse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(stack.gatehouse_binary()), *args], capture_output=True,
                          text=True, timeout=60)


def _param_free(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_import_gives_the_hand_written_routes(openapi):
    r = _gatehouse("routes", "import", "--public-passthrough", str(openapi))
    assert r.returncode == 0, r.stderr
    imported = set()
    for line in r.stdout.splitlines():
        cols = line.split()
        if "public:" in line:
            imported.add((cols[0], _param_free(cols[1]), "public", "-"))
        else:
            method, path, kind, _id, action = cols[:5]
            imported.add((method, _param_free(path), kind, action))
    # The hand-written table of the bundled gatehouse.yaml: where, method, path, resource
    # (kind id), action, source.
    r = _gatehouse("routes", "--config", str(stack.GATEHOUSE_YAML))
    assert r.returncode == 0, r.stderr
    written = set()
    for line in r.stdout.splitlines():
        cols = line.split()
        method, path = cols[1], cols[2]
        if "public:" in line:
            written.add(("GET", _param_free(path), "public", "-"))
        elif "plan.action" in line:
            # A list route with `plan` (issue 14), imported from `x-gatehouse-plan`.
            assert (method, path, cols[3], cols[4], cols[5]) == ("GET", "/documents", "document",
                                                                 "(all)", "read"), line
            written.add((method, path, "document", "read"))
        elif cols[-1] != "denied" and method not in ("HEAD", "(other)"):
            written.add((method, _param_free(path), cols[3], cols[5]))
    # Every operation of the app is routed as gatehouse.yaml routes it by hand; the hand-written
    # routes also admit methods the app does not implement (POST /documents/{id}).
    operations = {(m, p) for m, p, _, _ in imported}
    assert {w for w in written if (w[0], w[1]) in operations} == imported
    assert operations <= {(w[0], w[1]) for w in written}
    assert len(imported) == 8


def test_import_types_parameters_fastapi_declares(tmp_path):
    doc = {"openapi": "3.1.0", "paths": {"/items/{item_id}": {"get": {
        "tags": ["item"],
        "parameters": [{"name": "item_id", "in": "path", "required": True,
                        "schema": {"type": "integer"}}]}}}}
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(doc))
    r = _gatehouse("routes", "import", str(path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:5] == ["GET", "/items/{item_id:int}", "item", "{item_id}", "read"]


def test_check_reports_uncovered_operations(openapi, tmp_path):
    # Everything the app's operations produce has a policy rule (public /health passed through).
    r = _gatehouse("routes", "--config", str(stack.GATEHOUSE_YAML), "check", "--openapi",
                   str(openapi), "--public-passthrough")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 uncovered" in r.stdout
    # /health decided instead: health/read has no policy.
    r = _gatehouse("routes", "--config", str(stack.GATEHOUSE_YAML), "check", "--openapi", str(openapi))
    assert r.returncode == 1
    assert "uncovered: GET /health produce health/read" in r.stdout
    # A policy set without the approve rule: the approve operation is uncovered.
    policies = tmp_path / "policies"
    shutil.copytree(stack.POLICIES, policies)
    doc = policies / "resource_policies" / "document.yaml"
    text = doc.read_text()
    assert "approve" in text
    # (and the admins' "*", which names every action).
    doc.write_text(text.replace('"approve"', '"approve_old"').replace('["*"]', '["read"]'))
    cfg = tmp_path / "gatehouse.yaml"
    cfg.write_text(stack.GATEHOUSE_YAML.read_text().replace("directory: policies", f"directory: {policies}"))
    (tmp_path / "examples" / "fastapi").mkdir(parents=True)
    shutil.copy(stack.JWKS, tmp_path / "examples" / "fastapi" / "dev-jwks.json")
    r = _gatehouse("routes", "--config", str(cfg), "check")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "document/approve" in r.stdout
    assert "unused: policy action document/approve_old is produced by no route" in r.stdout


def test_unreachable_openapi_url_keeps_the_hand_written_routes_and_is_reported(work_dir):
    down = f"http://127.0.0.1:{stack.closed_port()}/openapi.json"
    gh = stack.start_gatehouse("openapi-down", "http://127.0.0.1:1", work_dir,
                               ext_authz={"openapi": {"url": down, "timeoutMs": 500}})
    try:
        status = httpx.get(f"http://127.0.0.1:{gh.admin_port}/_gatehouse/status", timeout=5).json()
        assert status["openapi"]["routes"] == 0, status
        assert down in status["openapi"]["lastError"], status
        assert "OpenAPI route import failed" in gh.proc.log_path.read_text()
    finally:
        gh.proc.stop()
