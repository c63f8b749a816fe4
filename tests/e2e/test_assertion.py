"""Issue 18: the signed assertion ("wristband"). Gatehouse signs each allowed request;
the app (GATEHOUSE_ASSERTION_JWKS_URL set) refuses requests without a valid assertion
for exactly that request. Its own stack: app, Gatehouse with `extAuthz.assertion`, Envoy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import stack
from conftest import _track


@dataclass
class Wristband:
    app_url: str
    envoy_url: str
    gatehouse_admin: int


@pytest.fixture(scope="module")
def wristband(work_dir: Path) -> Iterator[Wristband]:
    key = work_dir / "assertion-key.pem"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    app_port = stack.free_port()
    app_url = f"http://127.0.0.1:{app_port}"
    grpc, http = stack.free_port(), stack.free_port()
    ext = stack.gatehouse_config(grpc, http, app_url)["extAuthz"]
    ext["assertion"] = {"keyFile": str(key), "audience": "documents-api", "ttlSeconds": 60}
    gh = stack.start_gatehouse("wristband", app_url, work_dir, http_port=http, extra={"extAuthz": ext})
    _track(gh.proc)
    app = _track(stack.start_app(app_port, work_dir, env={
        "GATEHOUSE_ASSERTION_JWKS_URL": f"http://127.0.0.1:{gh.admin_port}/_gatehouse/jwks.json",
        "GATEHOUSE_ASSERTION_AUDIENCE": "documents-api",
    }))
    cfg = stack.envoy_config(stack.ENVOY_YAML, listen_port=stack.free_port(),
                             admin_port=stack.free_port(), app_port=app_port,
                             gatehouse_port=gh.grpc_port)
    env = stack.start_envoy("wristband", cfg, work_dir)
    _track(env.proc)
    yield Wristband(app_url, env.url, gh.admin_port)
    env.proc.stop()
    app.stop()
    gh.proc.stop()


def test_through_envoy_everything_works(wristband: Wristband, tokens: dict[str, str]) -> None:
    r = httpx.get(f"{wristband.envoy_url}/documents/1",
                  headers={"authorization": f"Bearer {tokens['alice']}"})
    assert r.status_code == 200, r.text
    jwks = httpx.get(f"http://127.0.0.1:{wristband.gatehouse_admin}/_gatehouse/jwks.json").json()
    assert jwks["keys"][0]["kty"] == "OKP" and jwks["keys"][0]["crv"] == "Ed25519"


def test_forged_headers_straight_to_the_app_are_refused(wristband: Wristband) -> None:
    r = httpx.get(f"{wristband.app_url}/documents/1",
                  headers={"x-gatehouse-principal": "root", "x-gatehouse-roles": "admin"})
    assert r.status_code == 401
    assert "x-gatehouse-assertion" in r.json()["detail"]
    r = httpx.get(f"{wristband.app_url}/documents/1",
                  headers={"x-gatehouse-principal": "root", "x-gatehouse-roles": "admin",
                           "x-gatehouse-assertion": "e30.e30.AAAA"})
    assert r.status_code == 401


def test_a_replayed_assertion_is_refused_for_another_request(wristband: Wristband,
                                                            tokens: dict[str, str]) -> None:
    r = httpx.get(f"{wristband.envoy_url}/documents/1",
                  headers={"authorization": f"Bearer {tokens['alice']}"})
    assert r.status_code == 200, r.text
    seen = [e for e in httpx.get(f"{wristband.app_url}/internal/test/requests").json()
            if e["path"] == "/documents/1" and e["assertion"]][-1]
    captured = {"x-gatehouse-principal": seen["principal"], "x-gatehouse-roles": seen["roles"] or "",
                "x-gatehouse-assertion": seen["assertion"]}
    # The same assertion, straight to the app, for another document or another method.
    assert httpx.get(f"{wristband.app_url}/documents/2", headers=captured).status_code == 401
    r = httpx.delete(f"{wristband.app_url}/documents/1", headers=captured)
    assert r.status_code == 401
    assert "another request" in r.json()["detail"]
    # Claiming to be someone else with alice's assertion.
    forged = {**captured, "x-gatehouse-principal": "root"}
    assert httpx.get(f"{wristband.app_url}/documents/1", headers=forged).status_code == 401
