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


# === Certificate rotation seen by a real Envoy ===========================================


def _served_certificate(port: int, certs: Path) -> bytes:
    """The DER certificate Gatehouse presents on `port` now (a fresh handshake)."""
    import socket
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    ctx.load_cert_chain(certs / "client.pem", certs / "client.key")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)


def _der(pem: Path) -> bytes:
    import ssl

    return ssl.PEM_cert_to_DER_cert(pem.read_text())


def _until(what: str, probe, timeout: float = 15.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last is True:
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def test_issue_12_certificate_rotation_through_envoy(app: App, work_dir: Path, certs: Path,
                                                     tokens: dict[str, str]) -> None:
    """cert-manager style: the files behind server.tls are replaced while Envoy keeps
    calling. A new certificate of the same CA: Envoy's checks go on (new connections, after
    the connection age, see it); a certificate of a CA Envoy does not trust: Envoy fails
    closed (503) and nothing reaches the app; back to a trusted one: served again."""
    import shutil
    import time

    subprocess.run(["bash", str(stack.REPO / "scripts" / "gen-test-certs.sh"), str(certs),
                    "rotated", "untrusted-server"], check=True)
    live = work_dir / "rotating-tls"
    live.mkdir(exist_ok=True)

    def install(name: str) -> None:
        # Key first, then certificate: a half-done rotation (new key, old certificate)
        # does not load, and the previous pair stays in force until both match.
        shutil.copyfile(certs / f"{name}.key", live / "tls.key.tmp")
        (live / "tls.key.tmp").replace(live / "tls.key")
        shutil.copyfile(certs / f"{name}.pem", live / "tls.crt.tmp")
        (live / "tls.crt.tmp").replace(live / "tls.crt")

    install("server")
    tls = {"cert": str(live / "tls.crt"), "key": str(live / "tls.key"),
           "caCert": str(certs / "ca.pem"), "clientAuth": "required", "reloadIntervalMs": 200}
    gh = stack.start_gatehouse("tls-rotation", app.url, work_dir,
                               extra={"server": {"tls": tls,
                                                 "connections": {"maxConnectionAgeMs": 1000}}})
    _track(gh.proc)
    env = _envoy("tls-rotation", app, gh, work_dir, certs, "client")
    alice = {"authorization": f"Bearer {tokens['alice']}"}

    def status() -> int:
        return httpx.get(f"{env.url}/documents/1", headers=alice, timeout=10).status_code

    try:
        assert _served_certificate(gh.grpc_port, certs) == _der(certs / "server.pem")
        assert status() == 200

        install("rotated")
        _until("the rotated certificate served",
               lambda: _served_certificate(gh.grpc_port, certs) == _der(certs / "rotated.pem"))
        time.sleep(1.5)  # Envoy's connection from before the rotation has aged out
        for _ in range(10):
            assert status() == 200
            time.sleep(0.2)

        install("untrusted-server")
        _until("a certificate of another CA served",
               lambda: _served_certificate(gh.grpc_port, certs) == _der(certs / "untrusted-server.pem"))
        # (a connection opened before the rotation may serve until it ages out)
        _until("Envoy refusing the untrusted certificate (fail closed)", lambda: status() == 503 or status())
        mark = app.mark()
        for _ in range(5):
            assert status() == 503
        assert app.since(mark) == []

        install("rotated")
        _until("served again after rotating back", lambda: status() == 200 or status())
    finally:
        env.proc.stop()
        gh.proc.stop()
