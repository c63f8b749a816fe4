"""Shadow rollout through Envoy (issue 17, section 3): shadow mode lets a denial through
and counts it as `would_deny`; a candidate policy set that removes a permission produces
exactly the expected disagreements, and nothing changes for the caller."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

import stack
from helpers import Client, assert_allowed, assert_denied, create


def _metrics(gh: stack.Gatehouse) -> str:
    return httpx.get(f"http://127.0.0.1:{gh.admin_port}/metrics", timeout=5).text


def _samples(text: str, name: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith(name + "{")}


def _wait_log(gh: stack.Gatehouse, needles: list[str], timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log = gh.proc.log_path.read_text()
        if all(n in log for n in needles) or time.monotonic() > deadline:
            return log
        time.sleep(0.1)


def _stack(name: str, app: Any, work_dir: Path, tokens: dict[str, str],
           ext_authz: dict[str, Any]) -> Iterator[tuple[stack.Gatehouse, Client]]:
    gh = stack.start_gatehouse(name, app.url, work_dir, ext_authz=ext_authz)
    env = None
    try:
        cfg = stack.envoy_config(stack.ENVOY_YAML, listen_port=stack.free_port(),
                                 admin_port=stack.free_port(), app_port=app.port,
                                 gatehouse_port=gh.grpc_port)
        env = stack.start_envoy(name, cfg, work_dir)
        c = Client(env, tokens)
        yield gh, c
        c.close()
    finally:
        if env is not None:
            env.proc.stop()
        gh.proc.stop()


# === Shadow mode =========================================================================


@pytest.fixture(scope="module")
def shadow(app, work_dir, tokens):
    """Shadow by default; the approve route enforces."""
    routes = stack.gatehouse_config(0, 0, app.url)["extAuthz"]["routes"]
    (approve,) = [r for r in routes if r.get("path") == "/documents/{id}/approve"]
    approve["mode"] = "enforce"
    yield from _stack("shadow", app, work_dir, tokens, {"mode": "shadow", "routes": routes})


def test_shadow_mode_lets_a_denial_through_and_counts_it(shadow, app):
    gh, client = shadow
    mark = app.mark()
    r = client.get("/documents/1", as_="carol")  # carol (sales) may not read it
    body = assert_allowed(r, app, mark, "carol", ["user"])
    decision = body["seen_by"]["decision_id"]
    samples = _samples(_metrics(gh), "gatehouse_decisions_total")
    key = 'gatehouse_decisions_total{effect="would_deny",kind="document",action="read",origin="ext_authz"}'
    assert samples.get(key) == 1, samples
    log = _wait_log(gh, [decision])
    (line,) = [l for l in log.splitlines() if decision in l and "would deny" in l]
    assert "carol may not read document" in line

    # An allowed request is an allow, not a would_deny.
    mark = app.mark()
    assert_allowed(client.get("/documents/1", as_="alice"), app, mark, "alice", ["user"])
    samples = _samples(_metrics(gh), "gatehouse_decisions_total")
    assert samples.get(key) == 1, samples


def test_a_route_in_enforce_mode_still_denies(shadow, app):
    gh, client = shadow
    mark = app.mark()
    assert_denied(client.post("/documents/4/approve", as_="bob"), app, mark)  # sales doc
    samples = _samples(_metrics(gh), "gatehouse_decisions_total")
    assert samples.get('gatehouse_decisions_total{effect="deny",kind="document",action="approve",origin="ext_authz"}') == 1
    assert not any("would_deny" in k and "approve" in k for k in samples), samples


# === Candidate policy set ================================================================


def _candidate_without_manager_approval(work_dir: Path) -> Path:
    """The live policies minus the rule that lets managers approve."""
    target = work_dir / "candidate-policies"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(stack.POLICIES, target)
    doc = target / "resource_policies" / "document.yaml"
    text = doc.read_text()
    cut, n = re.subn(r"\n    # Managers approve.*?\n(?=    # Archived)", "\n", text, flags=re.S)
    assert n == 1 and "name: approve\n" not in cut, "document.yaml changed shape"
    doc.write_text(cut)
    return target


@pytest.fixture(scope="module")
def candidate(app, work_dir, tokens):
    yield from _stack("candidate", app, work_dir, tokens,
                      {"candidate": {"directory": str(_candidate_without_manager_approval(work_dir))}})


def test_candidate_that_removes_a_permission(candidate, app):
    gh, client = candidate
    # Two approvals the live set allows and the candidate would not ...
    approved = []
    for amount in (10, 20):
        doc = create(client, "alice", status="in_review", amount=amount)
        mark = app.mark()
        r = client.post(f"/documents/{doc}/approve", as_="bob")
        body = assert_allowed(r, app, mark, "bob", ["manager"])  # the live answer
        assert body["status"] == "approved"
        approved.append(body["seen_by"]["decision_id"])
    # ... and decisions on which they agree: reads, denials, an admin's approval.
    mark = app.mark()
    assert_allowed(client.get("/documents/1", as_="alice"), app, mark, "alice", ["user"])
    mark = app.mark()
    assert_denied(client.get("/documents/1", as_="carol"), app, mark)
    mark = app.mark()
    assert_denied(client.post("/documents/4/approve", as_="bob"), app, mark)
    doc = create(client, "alice", status="in_review", amount=5)
    mark = app.mark()
    assert_allowed(client.post(f"/documents/{doc}/approve", as_="root"), app, mark, "root", ["admin"])

    # Exactly the two approvals disagree, under their kind and action ...
    samples = _samples(_metrics(gh), "gatehouse_candidate_disagreements_total")
    assert samples == {'gatehouse_candidate_disagreements_total{kind="document",action="approve"}': 2}, samples
    # ... each logged with both answers and its decision id.
    log = _wait_log(gh, approved)
    lines = [l for l in log.splitlines() if "candidate policy set disagrees" in l]
    assert len(lines) == 2, lines
    for decision, line in zip(approved, lines):
        assert decision in line and "live=allow" in line and "candidate=deny" in line, line
