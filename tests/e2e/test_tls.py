"""Envoy calls Gatehouse's ext_authz over TLS with a client certificate (issue 12).

Gatehouse serves `server.tls` with `clientAuth: required`; a real Envoy presents a client
certificate signed by the CA Gatehouse trusts and verifies Gatehouse's certificate. A
second Envoy presents a certificate from another CA: its checks never reach a decision,
and Envoy fails closed (status_on_error 503). Certificates are made at test time by
scripts/gen-test-certs.sh.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import stack
from conftest import App, _track


@pytest.fixture(scope="module")
def certs(work_dir: Path) -> Path:
    d = work_dir / "certs"
    subprocess.run(["bash", str(stack.REPO / "scripts" / "gen-test-certs.sh"), str(d)], check=True)
    return d


@pytest.fixture(scope="module")
def gatehouse_tls(app: App, work_dir: Path, certs: Path) -> Iterator[stack.Gatehouse]:
    tls = {"cert": str(certs / "server.pem"), "key": str(certs / "server.key"),
           "caCert": str(certs / "ca.pem"), "clientAuth": "required"}
    gh = stack.start_gatehouse("tls", app.url, work_dir, extra={"server": {"tls": tls}})
    _track(gh.proc)
    yield gh
    gh.proc.stop()


def _envoy(name: str, app: App, gh: stack.Gatehouse, work_dir: Path, certs: Path,
           client: str) -> stack.Envoy:
    cfg = stack.envoy_config(
        stack.ENVOY_YAML, listen_port=stack.free_port(), admin_port=stack.free_port(),
        app_port=app.port, gatehouse_port=gh.grpc_port,
        gatehouse_tls={"ca": certs / "ca.pem", "cert": certs / f"{client}.pem",
                       "key": certs / f"{client}.key"},
    )
    env = stack.start_envoy(name, cfg, work_dir)
    _track(env.proc)
    return env


@pytest.fixture(scope="module")
def envoy_mtls(app: App, gatehouse_tls: stack.Gatehouse, work_dir: Path, certs: Path) -> Iterator[stack.Envoy]:
    env = _envoy("mtls", app, gatehouse_tls, work_dir, certs, "client")
    yield env
    env.proc.stop()


@pytest.fixture(scope="module")
def envoy_wrong_cert(app: App, gatehouse_tls: stack.Gatehouse, work_dir: Path, certs: Path) -> Iterator[stack.Envoy]:
    env = _envoy("wrong-cert", app, gatehouse_tls, work_dir, certs, "wrong-client")
    yield env
    env.proc.stop()


def test_issue_12_envoy_ext_authz_over_mutual_tls(app: App, envoy_mtls: stack.Envoy,
                                                  tokens: dict[str, str]) -> None:
    mark = app.mark()
    allowed = httpx.get(f"{envoy_mtls.url}/documents/1",
                        headers={"authorization": f"Bearer {tokens['alice']}"}, timeout=10)
    assert allowed.status_code == 200, allowed.text
    denied = httpx.get(f"{envoy_mtls.url}/documents/1",
                       headers={"authorization": f"Bearer {tokens['carol']}"}, timeout=10)
    assert denied.status_code == 403, denied.text
    anonymous = httpx.get(f"{envoy_mtls.url}/documents/1", timeout=10)
    assert anonymous.status_code == 401, anonymous.text
    assert len(app.since(mark)) == 1


def test_issue_12_a_wrong_client_certificate_is_refused(app: App, envoy_wrong_cert: stack.Envoy,
                                                        gatehouse_tls: stack.Gatehouse,
                                                        tokens: dict[str, str]) -> None:
    mark = app.mark()
    r = httpx.get(f"{envoy_wrong_cert.url}/documents/1",
                  headers={"authorization": f"Bearer {tokens['alice']}"}, timeout=10)
    assert r.status_code == 503, r.text
    assert app.since(mark) == []
    assert "TLS handshake refused" in gatehouse_tls.proc.log_path.read_text()


def test_issue_12_plaintext_is_not_served_on_tls_listeners(gatehouse_tls: stack.Gatehouse) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{gatehouse_tls.http_port}/_cerbos/health", timeout=3)
    assert httpx.get(gatehouse_tls.admin_health_url, timeout=3).status_code == 200
