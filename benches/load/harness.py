"""The side-by-side load benchmark behind benches/load.sh (run that; it builds, installs and
then calls this with the paths below in the environment).

In one run, all on 127.0.0.1, it starts:

- the empty tonic ext_authz server (examples/empty_authz.rs: always OK, the ceiling);
- Gatehouse with audit off, and Gatehouse with the bundled gatehouse.yaml (audit on, stdout
  to a file), both on ../shared/bench/policies;
- the real Cerbos 0.55 on the same policies;
- an upstream (examples/bench_upstream.rs: always 200) and Envoy 1.40 (envoy/envoy.yaml
  without its access log) in front of it: no authz, the empty server, Gatehouse (audit off),
  Gatehouse (bundled config);

checks that every server gives the expected answers, then times each row LOAD_ROUNDS times
(the Envoy rows LOAD_ENVOY_ROUNDS times, shorter), alternating between the servers of a row,
and writes BENCHMARKS.md and BENCHMARKS.json (medians with ranges, req/s, p50/p99, server CPU
µs per request from /proc/<pid>/stat, idle and peak RSS, ratios of the medians and of each
round's back-to-back pair, and how steady the machine was: a fixed CPU loop timed before
every run). Every process it starts is stopped by PID on exit, error or signal.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import grpc
import yaml
from cerbos.response.v1 import response_pb2
from google.protobuf import json_format

ROOT = Path(__file__).resolve().parents[2]
ENV = os.environ
BENCH = Path(ENV.get("GATEHOUSE_BENCH_DIR", ROOT.parent / "shared" / "bench")).resolve()
SECONDS = float(ENV.get("LOAD_SECONDS", "10"))
WARMUP = float(ENV.get("LOAD_WARMUP", "2"))
ROUNDS = int(ENV.get("LOAD_ROUNDS", "3"))
# The Envoy rows: four processes share the two cores there and a run's speed swings most from
# round to round, so they take three times the rounds, each a third as long (the same timed
# seconds), and their ratios are also taken round by round.
ENVOY_ROUNDS = int(ENV.get("LOAD_ENVOY_ROUNDS", str(3 * ROUNDS)))
ENVOY_SECONDS = float(ENV.get("LOAD_ENVOY_SECONDS", f"{max(1.0, SECONDS / 3):g}"))
MUX_AUTHZ = "ext_authz Check, multiplexed gRPC (h2load, 2 connections × 32 streams)"
MUX_CHECK = "CheckResources, multiplexed gRPC (h2load, 2 connections × 32 streams)"
ROWS = ENV.get("LOAD_ROWS", "")  # comma-separated substrings of group names; empty: all
OUT_DIR = Path(ENV.get("LOAD_OUT_DIR", ROOT)).resolve()
COMMAND = ENV.get("LOAD_COMMAND", "bash benches/load.sh")
TICKS = os.sysconf("SC_CLK_TCK")
AUTHZ = "/envoy.service.auth.v3.Authorization/Check"
CHECK = "/cerbos.svc.v1.CerbosService/CheckResources"
PLAN = "/cerbos.svc.v1.CerbosService/PlanResources"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    """One server this run started; stopped by its PID."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def cpu_ticks(self) -> int:
        # Fields 14 and 15 (utime, stime) of /proc/<pid>/stat, after the parenthesised name.
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def thread_ticks(self) -> dict[str, int]:
        """utime + stime per thread name (threads of one name summed, e.g. the tokio workers)."""
        out: dict[str, int] = {}
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                name = (task / "comm").read_text().strip()
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended meanwhile
                continue
            out[name] = out.get(name, 0) + int(fields[11]) + int(fields[12])
        return out

    def status_kib(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


PROCS: list[Proc] = []
WORK = Path(tempfile.mkdtemp(prefix="gatehouse-load-"))


def start(name: str, cmd: list[str], work: Path) -> Proc:
    log_path = work / f"{name}.log"
    out = open(log_path, "ab")  # append mode: truncating between rows stays safe
    popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
    out.close()
    proc = Proc(name, popen, log_path)
    PROCS.append(proc)
    return proc


def stop_all() -> None:
    for proc in reversed(PROCS):
        try:
            proc.stop()
        except Exception as e:  # keep stopping the others
            log(f"stopping {proc.name} (pid {proc.pid}): {e}")


def wait_until(proc: Proc, ready: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise SystemExit(f"{proc.name} exited during startup:\n{proc.tail()}")
        try:
            if ready():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{proc.name} not ready after {timeout:.0f} s:\n{proc.tail()}")


def http_ok(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200

    return ready


def grpc_call(port: int, path: str, framed: bytes, timeout: float = 5) -> bytes:
    """One unary call with a pre-encoded body (the 5-byte gRPC frame is stripped)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        return call(framed[5:], timeout=timeout)


def http_json(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body else "GET")
    if body:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# --- protobuf, by hand, for the ext_authz CheckResponse (status.code) ----------------------------


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def _fields(buf: bytes) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            length, i = _varint(buf, i)
            value, i = buf[i : i + length], i + length
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def ext_authz_code(response: bytes) -> int:
    """CheckResponse.status (1) -> google.rpc.Status.code (1); absent fields are 0 (OK)."""
    status = _fields(response).get(1, [b""])[0]
    return _fields(status).get(1, [0])[0]


# --- what every server must answer --------------------------------------------------------------


def normalise_filter(node: Any) -> Any:
    """A plan filter with and/or flattened, de-duplicated and sorted (Cerbos varies in them)."""
    if isinstance(node, dict):
        node = {k: normalise_filter(v) for k, v in node.items()}
        expr = node.get("expression")
        if isinstance(expr, dict) and expr.get("operator") in ("and", "or"):
            flat: list[Any] = []
            for operand in expr.get("operands", []):
                inner = operand.get("expression") if isinstance(operand, dict) else None
                if isinstance(inner, dict) and inner.get("operator") == expr["operator"]:
                    flat.extend(inner.get("operands", []))
                else:
                    flat.append(operand)
            unique = {json.dumps(o, sort_keys=True): o for o in flat}
            expr["operands"] = [unique[k] for k in sorted(unique)]
        return node
    if isinstance(node, list):
        return [normalise_filter(v) for v in node]
    return node


@dataclass
class Fixtures:
    work: Path
    check_json: bytes
    plan_json: bytes
    check_bin: bytes
    plan_bin: bytes
    authz_bin: bytes
    expected: dict[str, str]
    token: str
    doc_headers: dict[str, str]


def check_actions_http(port: int, fx: Fixtures) -> dict[str, str]:
    status, body = http_json(f"http://127.0.0.1:{port}/api/check/resources", fx.check_json)
    if status != 200:
        raise SystemExit(f"CheckResources HTTP on {port}: {status} {body[:300]!r}")
    return json.loads(body)["results"][0]["actions"]


def check_actions_grpc(port: int, fx: Fixtures) -> dict[str, str]:
    resp = response_pb2.CheckResourcesResponse.FromString(grpc_call(port, CHECK, fx.check_bin))
    return json_format.MessageToDict(resp)["results"][0]["actions"]


def plan_http(port: int, fx: Fixtures) -> dict[str, Any]:
    status, body = http_json(f"http://127.0.0.1:{port}/api/plan/resources", fx.plan_json)
    if status != 200:
        raise SystemExit(f"PlanResources HTTP on {port}: {status} {body[:300]!r}")
    return json.loads(body)["filter"]


def plan_grpc(port: int, fx: Fixtures) -> dict[str, Any]:
    resp = response_pb2.PlanResourcesResponse.FromString(grpc_call(port, PLAN, fx.plan_bin))
    return json_format.MessageToDict(resp)["filter"]


def envoy_get(port: int, headers: dict[str, str]) -> tuple[int, bytes]:
    return http_json(f"http://127.0.0.1:{port}/documents/doc-1", None, headers)


# --- load generators ------------------------------------------------------------------------------


@dataclass
class Target:
    """What one row sends: gRPC through h2load, or HTTP through wrk."""

    kind: str  # "grpc" | "http"
    url: str
    body: Path | None = None  # gRPC body, or the wrk Lua script for HTTP
    headers: dict[str, str] = field(default_factory=dict)


def run_h2load(t: Target, clients: int, seconds: float, warmup: float, work: Path,
               streams: int = 1) -> tuple[float, float, float, int]:
    """`clients` requests in flight: as many connections with one stream each, or, with
    `streams` > 1, `clients / streams` connections carrying `streams` streams each."""
    log_file = work / "h2load-requests.log"
    log_file.unlink(missing_ok=True)
    streams = max(1, min(streams, clients))
    cmd = ["h2load", "-c", str(clients // streams), "-m", str(streams), "-t", "1", "-D", f"{seconds:g}",
           f"--warm-up-time={warmup:g}",
           f"--log-file={log_file}", "-H", "content-type: application/grpc", "-H", "te: trailers",
           "-d", str(t.body), t.url]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + warmup + 60)
    out = run.stdout + run.stderr
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if not done or done.group(3) != "0" or done.group(4) != "0" or int(done.group(2)) == 0:
        raise SystemExit(f"h2load failed on {t.url}:\n{out}")
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not codes or any(int(codes.group(i)) for i in (2, 3, 4)):
        raise SystemExit(f"h2load got non-2xx answers on {t.url}:\n{out}")
    rps = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))
    xs = sorted(int(line.split()[2]) for line in log_file.read_text().splitlines() if line.strip())
    pick = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))] / 1000  # noqa: E731 (µs -> ms)
    return rps, pick(0.5), pick(0.99), int(done.group(1))


def _wrk_ms(v: str) -> float:
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3), ("m", 6e4)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * scale
    raise ValueError(v)


def run_wrk(t: Target, clients: int, seconds: float, warmup: float, work: Path) -> tuple[float, float, float, int]:
    threads = str(min(2, clients))
    # A 30 s request timeout (wrk's default, 2 s, is shorter than Cerbos's p99 for plans at
    # concurrency 64 on a busy machine); a request that still times out fails the row.
    base = ["wrk", "-t", threads, "-c", str(clients), "--timeout", "30s"]
    for k, v in t.headers.items():
        base += ["-H", f"{k}: {v}"]
    if t.body:
        base += ["-s", str(t.body)]
    if warmup > 0:  # wrk has no warm-up of its own: a short untimed run first
        subprocess.run(base + ["-d", f"{max(1, round(warmup))}s", t.url], capture_output=True, timeout=warmup + 60)
    out = subprocess.run(base + ["-d", f"{max(1, round(seconds))}s", "--latency", t.url], capture_output=True,
                         text=True, timeout=seconds + 60).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk got errors on {t.url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _wrk_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _wrk_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, p50, p99, requests


# --- rows -----------------------------------------------------------------------------------------


@dataclass
class Server:
    """A column of a row: the label, the target, and the processes whose CPU it costs."""

    label: str
    target: Target
    procs: list[Proc]


@dataclass
class Group:
    name: str
    tool: str
    concurrency: list[int]  # requests in flight
    servers: list[Server]
    rounds: int = ROUNDS
    seconds: float = SECONDS
    streams: int = 1  # h2load: streams per connection (a connection per request in flight if 1)


def schedule(groups: list[Group]) -> list[tuple[int, Group, int, Server]]:
    """The runs in order, as (round, group, concurrency, server): round by round, each row's
    servers back to back (so a round's pair of servers saw the same machine), a group
    leaving the rotation once its rounds are done."""
    order = []
    for rnd in range(max((g.rounds for g in groups), default=0)):
        for g in groups:
            if rnd < g.rounds:
                order += [(rnd, g, c, s) for c in g.concurrency for s in g.servers]
    return order


def steadiness_probe_ms() -> float:
    """CPU milliseconds a fixed loop takes, timed between runs while the servers idle: on a
    shared (virtual) machine it moves with the speed the host gives us, which no server
    controls; the spread over a run says how far two runs' figures can differ for that alone."""
    t0 = time.process_time()
    x = 0
    for i in range(300_000):
        x = (x + i * i) % 1_000_003
    return (time.process_time() - t0) * 1e3


def measure(group: Group, server: Server, clients: int, work: Path) -> dict[str, Any]:
    """One timed run; CPU is sampled inside the timed window (after the warm-up) as a rate."""
    for proc in server.procs:  # Gatehouse's audit log: keep the disk from filling up
        if proc.alive():
            os.truncate(proc.log_path, 0)
    samples: dict[str, Any] = {}
    seconds = group.seconds
    window = (WARMUP + min(0.3, seconds / 10), WARMUP + seconds - min(0.3, seconds / 10))

    def sample() -> None:
        t_start = time.monotonic()
        time.sleep(window[0])
        c0 = {p.name: p.cpu_ticks() for p in server.procs}
        t0 = {p.name: p.thread_ticks() for p in server.procs}
        w0 = time.monotonic()
        time.sleep(max(0.0, t_start + window[1] - time.monotonic()))
        c1 = {p.name: p.cpu_ticks() for p in server.procs}
        t1 = {p.name: p.thread_ticks() for p in server.procs}
        samples["seconds"] = time.monotonic() - w0
        samples["ticks"] = {k: c1[k] - c0[k] for k in c0}
        samples["thread_ticks"] = {k: {t: v - t0[k].get(t, 0) for t, v in t1[k].items()} for k in t1}

    sampler = threading.Thread(target=sample, daemon=True)
    load_before = os.getloadavg()[0]
    sampler.start()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if group.tool == "h2load":
        rps, p50, p99, requests = run_h2load(server.target, clients, seconds, WARMUP, work, group.streams)
    else:
        rps, p50, p99, requests = run_wrk(server.target, clients, seconds, WARMUP, work)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler.join()
    # The load generator's own CPU (h2load or wrk, warm-up included) per request it sent, at
    # the timed rate over the whole run: on a shared machine, what it leaves to the server.
    client_s = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    client_us = client_s / (rps * (seconds + WARMUP)) * 1e6 if rps > 0 else 0.0
    for proc in server.procs:
        if not proc.alive():
            raise SystemExit(f"{proc.name} died under load:\n{proc.tail()}")
    per_req = lambda ticks: ticks / TICKS / samples["seconds"] / rps * 1e6  # noqa: E731
    cpu_us = {k: per_req(v) for k, v in samples["ticks"].items()}
    by_thread = {k: {t: per_req(v) for t, v in threads.items() if v > 0}
                 for k, threads in samples["thread_ticks"].items()}
    return {"req_s": rps, "p50_ms": p50, "p99_ms": p99, "requests": requests,
            "cpu_us_per_req": sum(cpu_us.values()), "cpu_us_per_req_by_process": cpu_us,
            "cpu_us_per_req_by_thread": by_thread, "load_generator_cpu_us_per_req": client_us,
            "load_average": load_before}


def median_range(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


# --- the run --------------------------------------------------------------------------------------


def gatehouse_configs(work: Path, ports: dict[str, int]) -> tuple[Path, Path]:
    jwks = str(ROOT / "examples" / "fastapi" / "dev-jwks.json")
    header_attrs = {"headers": {"owner": "x-doc-owner", "department": "x-doc-department",
                                "status": "x-doc-status", "classification": "x-doc-classification"}}
    off = {
        "server": {"grpcListenAddr": f"127.0.0.1:{ports['gh_off_grpc']}",
                   "httpListenAddr": f"127.0.0.1:{ports['gh_off_http']}",
                   "adminListenAddr": f"127.0.0.1:{ports['gh_off_admin']}"},
        "policies": {"directory": str(BENCH / "policies")},
        "audit": {"mode": "off"},
        "extAuthz": {
            "principal": {
                "sources": [{"jwt": {"jwks": {"file": jwks}, "algorithms": ["RS256"],
                                     "issuer": "https://auth.example.test", "audiences": ["documents-api"]}}],
                "claims": {"id": "sub", "roles": "roles", "attr": ["department", "clearances", "approval_limit"]},
            },
            "routes": [{"path": "/documents/{id}", "methods": ["GET"], "resource": {"kind": "document", "id": "{id}"},
                        "action": "read", "attributes": header_attrs}],
        },
    }
    # The bundled gatehouse.yaml as shipped (audit of every decision to stdout, metrics, the
    # jwtAuthn then jwt principal sources), with the listen addresses and the policy
    # directory of this run, the JWKS path made absolute, and the document attributes of
    # GET /documents/{id} from headers instead of the example app's attribute endpoint.
    bundled = yaml.safe_load((ROOT / "gatehouse.yaml").read_text())
    bundled["server"].update({"grpcListenAddr": f"127.0.0.1:{ports['gh_bundled_grpc']}",
                              "httpListenAddr": f"127.0.0.1:{ports['gh_bundled_http']}",
                              "adminListenAddr": f"127.0.0.1:{ports['gh_bundled_admin']}"})
    bundled["policies"] = {"directory": str(BENCH / "policies")}
    for source in bundled["extAuthz"]["principal"]["sources"]:
        if "jwt" in source:
            source["jwt"]["jwks"]["file"] = jwks
    replaced = 0
    for route in bundled["extAuthz"]["routes"]:
        if route.get("path") == "/documents/{id}":
            route["attributes"] = header_attrs
            replaced += 1
    assert replaced == 1, "gatehouse.yaml no longer has one /documents/{id} route"
    assert bundled["audit"]["mode"] != "off", "the bundled config is expected to audit"
    paths = work / "gatehouse-off.yaml", work / "gatehouse-bundled.yaml"
    paths[0].write_text(yaml.safe_dump(off, sort_keys=False))
    paths[1].write_text(yaml.safe_dump(bundled, sort_keys=False))
    return paths


def envoy_config(work: Path, name: str, listen: int, admin: int, upstream: int, authz: int | None) -> Path:
    """envoy/envoy.yaml with this run's ports, without its access log; without ext_authz
    when authz is None."""
    cfg = copy.deepcopy(yaml.safe_load((ROOT / "envoy" / "envoy.yaml").read_text()))
    cfg["admin"]["address"]["socket_address"]["port_value"] = admin
    (listener,) = cfg["static_resources"]["listeners"]
    listener["address"]["socket_address"]["port_value"] = listen
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    hcm.pop("access_log", None)
    if authz is None:
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.ext_authz"]
    ports = {"app": upstream, "gatehouse": authz if authz is not None else free_port()}
    for cluster in cfg["static_resources"]["clusters"]:
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        endpoint["address"]["socket_address"]["port_value"] = ports[cluster["name"]]
    path = work / f"envoy-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal:"))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(int(mem) / 1024 / 1024, 1),
            "kernel": platform.release(), "os": platform.platform()}


def version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except Exception as e:
        return f"unknown ({e})"


def main() -> None:
    gatehouse, empty_authz, upstream_bin = ENV["GATEHOUSE_BIN"], ENV["EMPTY_AUTHZ_BIN"], ENV["UPSTREAM_BIN"]
    cerbos, envoy = ENV["CERBOS_BIN"], ENV["ENVOY_BIN"]
    work = WORK
    started = dt.datetime.now(dt.timezone.utc)
    load_start = os.getloadavg()

    # Fixtures: the token (bob, two hours), the gRPC bodies, the wrk scripts.
    token = subprocess.run([sys.executable, "examples/fastapi/mint_token.py", "bob", "--ttl", "7200"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
    plan_json_path = ROOT / "benches" / "load" / "plan_resources.json"
    subprocess.run([sys.executable, str(ROOT / "benches/load/encode.py"), str(BENCH / "check_resources.json"), token,
                    str(work), str(plan_json_path)], check=True)
    check_req = json.loads((BENCH / "check_resources.json").read_text())
    attrs = check_req["resources"][0]["resource"]["attr"]
    doc_headers = {"authorization": f"Bearer {token}"}
    doc_headers.update({f"x-doc-{k}": attrs[k] for k in ("owner", "department", "status", "classification")})
    fx = Fixtures(work, (BENCH / "check_resources.json").read_bytes(), plan_json_path.read_bytes(),
                  (work / "check_resources.bin").read_bytes(), (work / "plan_resources.bin").read_bytes(),
                  (work / "ext_authz_check.bin").read_bytes(), json.loads((BENCH / "expected.json").read_text()),
                  token, doc_headers)
    for name, source in (("check", BENCH / "check_resources.json"), ("plan", plan_json_path)):
        (work / f"{name}.lua").write_text(
            'wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\n'
            f'local f = io.open("{source}", "rb")\nwrk.body = f:read("*a")\nf:close()\n')

    # Servers.
    names = ["empty", "gh_off_grpc", "gh_off_http", "gh_off_admin", "gh_bundled_grpc", "gh_bundled_http",
             "gh_bundled_admin", "cerbos_grpc", "cerbos_http", "upstream"]
    ports = {n: free_port() for n in names}
    off_cfg, bundled_cfg = gatehouse_configs(work, ports)
    empty = start("empty-authz", [empty_authz, f"127.0.0.1:{ports['empty']}"], work)
    gh_off = start("gatehouse-audit-off", [gatehouse, "serve", "--config", str(off_cfg)], work)
    gh_bundled = start("gatehouse-bundled", [gatehouse, "serve", "--config", str(bundled_cfg)], work)
    cerbos_p = start("cerbos", [cerbos, "server", "--set=storage.driver=disk",
                                f"--set=storage.disk.directory={BENCH / 'policies'}",
                                f"--set=server.httpListenAddr=127.0.0.1:{ports['cerbos_http']}",
                                f"--set=server.grpcListenAddr=127.0.0.1:{ports['cerbos_grpc']}",
                                "--log-level=error"], work)
    upstream = start("upstream", [upstream_bin, f"127.0.0.1:{ports['upstream']}"], work)
    envoys: dict[str, tuple[Proc, int]] = {}
    for i, (name, authz) in enumerate((("no-authz", None), ("empty", ports["empty"]),
                                      ("gatehouse-audit-off", ports["gh_off_grpc"]),
                                      ("gatehouse-bundled", ports["gh_bundled_grpc"]))):
        listen, admin = free_port(), free_port()
        cfg = envoy_config(work, name, listen, admin, ports["upstream"], authz)
        proc = start(f"envoy-{name}", [envoy, "-c", str(cfg), "--disable-hot-restart",
                                       "--base-id", str(os.getpid() % 10000 * 10 + i),
                                       "--log-level", "warning"], work)
        envoys[name] = (proc, listen)
        wait_until(proc, http_ok(f"http://127.0.0.1:{admin}/ready"))

    for proc, url in ((gh_off, f"http://127.0.0.1:{ports['gh_off_http']}/health"),
                      (gh_bundled, f"http://127.0.0.1:{ports['gh_bundled_http']}/health"),
                      (cerbos_p, f"http://127.0.0.1:{ports['cerbos_http']}/_cerbos/health")):
        wait_until(proc, http_ok(url))
    wait_until(empty, lambda: ext_authz_code(grpc_call(ports["empty"], AUTHZ, fx.authz_bin, 1)) == 0)
    wait_until(upstream, lambda: http_json(f"http://127.0.0.1:{ports['upstream']}/")[0] == 200)

    # Every server must answer correctly before anything is timed.
    checks: list[str] = []

    def expect(what: str, got: Any, want: Any) -> None:
        if got != want:
            raise SystemExit(f"{what}: got {json.dumps(got)}, expected {json.dumps(want)}")
        checks.append(what)

    want_read = fx.expected["read"] == "EFFECT_ALLOW"
    for label, port in (("empty server", ports["empty"]), ("Gatehouse audit off", ports["gh_off_grpc"]),
                        ("Gatehouse bundled", ports["gh_bundled_grpc"])):
        code = ext_authz_code(grpc_call(port, AUTHZ, fx.authz_bin))
        expect(f"{label}: ext_authz Check of bob reading doc-1 is OK", code == 0, True if label == "empty server" else want_read)
    for label, grpc_port, http_port in (("Cerbos", ports["cerbos_grpc"], ports["cerbos_http"]),
                                        ("Gatehouse audit off", ports["gh_off_grpc"], ports["gh_off_http"]),
                                        ("Gatehouse bundled", ports["gh_bundled_grpc"], ports["gh_bundled_http"])):
        expect(f"{label}: CheckResources gRPC = expected.json", check_actions_grpc(grpc_port, fx), fx.expected)
        expect(f"{label}: CheckResources HTTP = expected.json", check_actions_http(http_port, fx), fx.expected)
    cerbos_plan = plan_http(ports["cerbos_http"], fx)
    expect("Cerbos: PlanResources is conditional", cerbos_plan.get("kind"), "KIND_CONDITIONAL")
    for label, grpc_port, http_port in (("Cerbos", ports["cerbos_grpc"], ports["cerbos_http"]),
                                        ("Gatehouse audit off", ports["gh_off_grpc"], ports["gh_off_http"])):
        for via, got in (("gRPC", plan_grpc(grpc_port, fx)), ("HTTP", plan_http(http_port, fx))):
            expect(f"{label}: PlanResources {via} = Cerbos's filter (and/or normalised)",
                   normalise_filter(got), normalise_filter(cerbos_plan))
    no_token = {k: v for k, v in fx.doc_headers.items() if k != "authorization"}
    for name, (proc, port) in envoys.items():
        status, body = envoy_get(port, fx.doc_headers)
        expect(f"Envoy {name}: GET /documents/doc-1 as bob reaches the upstream", (status, body), (200, b"ok"))
        denied = name.startswith("gatehouse")
        status, _ = envoy_get(port, no_token)
        expect(f"Envoy {name}: GET without a token is {'denied (401)' if denied else 'passed (200)'}",
               status, 401 if denied else 200)
    log(f"all {len(checks)} answers as expected; timing")

    idle_rss = {p.name: p.status_kib("VmRSS") for p in PROCS}
    # The commit the binary was built from, as it reports it (ServerInfo).
    info = json.loads(http_json(f"http://127.0.0.1:{ports['gh_off_http']}/api/server_info")[1])
    gatehouse_info = f"{info.get('version', '?')} (commit {info.get('commit', '?')[:12]}, built {info.get('buildDate', '?')})"

    def grpc_t(port: int, path: str, body: str) -> Target:
        return Target("grpc", f"http://127.0.0.1:{port}{path}", work / body)

    def http_t(port: int, path: str, lua: str) -> Target:
        return Target("http", f"http://127.0.0.1:{port}{path}", work / lua)

    envoy_t = lambda port: Target("http", f"http://127.0.0.1:{port}/documents/doc-1", None, fx.doc_headers)  # noqa: E731
    groups = [
        Group("ext_authz Check, gRPC (h2load)", "h2load", [1, 8, 64], [
            Server("empty tonic server", grpc_t(ports["empty"], AUTHZ, "ext_authz_check.bin"), [empty]),
            Server("Gatehouse, audit off", grpc_t(ports["gh_off_grpc"], AUTHZ, "ext_authz_check.bin"), [gh_off]),
            Server("Gatehouse, bundled config (audit on)", grpc_t(ports["gh_bundled_grpc"], AUTHZ, "ext_authz_check.bin"),
                   [gh_bundled]),
        ]),
        Group("CheckResources, gRPC (h2load)", "h2load", [1, 8, 64], [
            Server("Cerbos 0.55", grpc_t(ports["cerbos_grpc"], CHECK, "check_resources.bin"), [cerbos_p]),
            Server("Gatehouse, audit off", grpc_t(ports["gh_off_grpc"], CHECK, "check_resources.bin"), [gh_off]),
        ]),
        # The same requests in flight as gRPC clients send them: a gRPC channel multiplexes
        # its calls over one HTTP/2 connection (the Cerbos SDKs, and Envoy's ext_authz client,
        # one connection per worker thread: two here), not a connection per call.
        Group(MUX_AUTHZ, "h2load", [64], streams=32, servers=[
            Server("empty tonic server", grpc_t(ports["empty"], AUTHZ, "ext_authz_check.bin"), [empty]),
            Server("Gatehouse, audit off", grpc_t(ports["gh_off_grpc"], AUTHZ, "ext_authz_check.bin"), [gh_off]),
            Server("Gatehouse, bundled config (audit on)", grpc_t(ports["gh_bundled_grpc"], AUTHZ, "ext_authz_check.bin"),
                   [gh_bundled]),
        ]),
        Group(MUX_CHECK, "h2load", [64], streams=32, servers=[
            Server("Cerbos 0.55", grpc_t(ports["cerbos_grpc"], CHECK, "check_resources.bin"), [cerbos_p]),
            Server("Gatehouse, audit off", grpc_t(ports["gh_off_grpc"], CHECK, "check_resources.bin"), [gh_off]),
        ]),
        Group("CheckResources, HTTP (wrk)", "wrk", [1, 8, 64], [
            Server("Cerbos 0.55", http_t(ports["cerbos_http"], "/api/check/resources", "check.lua"), [cerbos_p]),
            Server("Gatehouse, audit off", http_t(ports["gh_off_http"], "/api/check/resources", "check.lua"), [gh_off]),
        ]),
        Group("PlanResources, gRPC (h2load)", "h2load", [1, 64], [
            Server("Cerbos 0.55", grpc_t(ports["cerbos_grpc"], PLAN, "plan_resources.bin"), [cerbos_p]),
            Server("Gatehouse, audit off", grpc_t(ports["gh_off_grpc"], PLAN, "plan_resources.bin"), [gh_off]),
        ]),
        Group("PlanResources, HTTP (wrk)", "wrk", [1, 64], [
            Server("Cerbos 0.55", http_t(ports["cerbos_http"], "/api/plan/resources", "plan.lua"), [cerbos_p]),
            Server("Gatehouse, audit off", http_t(ports["gh_off_http"], "/api/plan/resources", "plan.lua"), [gh_off]),
        ]),
        Group("Envoy 1.40 -> upstream, HTTP/1.1 (wrk)", "wrk", [64], rounds=ENVOY_ROUNDS, seconds=ENVOY_SECONDS,
              servers=[
            Server("Envoy, no authz", envoy_t(envoys["no-authz"][1]), [envoys["no-authz"][0], upstream]),
            Server("Envoy + empty tonic server", envoy_t(envoys["empty"][1]), [envoys["empty"][0], empty, upstream]),
            Server("Envoy + Gatehouse, audit off", envoy_t(envoys["gatehouse-audit-off"][1]),
                   [envoys["gatehouse-audit-off"][0], gh_off, upstream]),
            Server("Envoy + Gatehouse, bundled config (audit on)", envoy_t(envoys["gatehouse-bundled"][1]),
                   [envoys["gatehouse-bundled"][0], gh_bundled, upstream]),
        ]),
    ]
    wanted = [w.strip().lower() for w in ROWS.split(",") if w.strip()]
    if wanted:
        groups = [g for g in groups if any(w in g.name.lower() for w in wanted)]

    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    order = schedule(groups)
    steadiness_probe_ms()  # the first call also pays for warming the interpreter up
    probes = []
    for n, (rnd, g, c, s) in enumerate(order, 1):
        probe = steadiness_probe_ms()
        probes.append(probe)
        r = measure(g, s, c, work)
        r["steadiness_probe_ms"] = probe
        runs.setdefault((g.name, s.label, c), []).append(r)
        log(f"[{n}/{len(order)}] round {rnd + 1} {g.name} c={c} {s.label}: {r['req_s']:.0f} req/s, "
            f"p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} ms, {r['cpu_us_per_req']:.0f} µs CPU/req "
            f"(probe {probe:.1f} ms)")
    peak_rss = {p.name: p.status_kib("VmHWM") for p in PROCS}
    after_rss = {p.name: p.status_kib("VmRSS") for p in PROCS}
    finished = dt.datetime.now(dt.timezone.utc)

    rows = []
    for g in groups:
        for c in g.concurrency:
            for s in g.servers:
                rs = runs[(g.name, s.label, c)]
                procs = {p.name: median_range([r["cpu_us_per_req_by_process"][p.name] for r in rs]) for p in s.procs}
                threads = {p.name: {t: median_range([r["cpu_us_per_req_by_thread"][p.name].get(t, 0.0) for r in rs])
                                    for t in sorted({t for r in rs for t in r["cpu_us_per_req_by_thread"][p.name]})}
                           for p in s.procs}
                rows.append({"group": g.name, "server": s.label, "concurrency": c, "tool": g.tool,
                             "req_s": median_range([r["req_s"] for r in rs]),
                             "p50_ms": median_range([r["p50_ms"] for r in rs]),
                             "p99_ms": median_range([r["p99_ms"] for r in rs]),
                             "cpu_us_per_req": median_range([r["cpu_us_per_req"] for r in rs]),
                             "load_generator_cpu_us_per_req": median_range(
                                 [r["load_generator_cpu_us_per_req"] for r in rs]),
                             "cpu_us_per_req_by_process": procs, "cpu_us_per_req_by_thread": threads,
                             "runs": rs})
    result = {
        "command": COMMAND,
        "started": started.isoformat(timespec="seconds"), "finished": finished.isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_at_start": load_start, "load_average_at_end": os.getloadavg(),
        "load_average_max_before_a_run": max(r["load_average"] for rs in runs.values() for r in rs),
        "settings": {"seconds": SECONDS, "warmup_seconds": WARMUP, "rounds": ROUNDS,
                     "envoy_rounds": ENVOY_ROUNDS, "envoy_seconds": ENVOY_SECONDS, "rows": ROWS or "all",
                     "profile": ENV.get("LOAD_PROFILE", "release")},
        "steadiness_probe_ms": median_range(probes),
        "versions": {
            "gatehouse": gatehouse_info,
            "cerbos": "Cerbos " + version([cerbos, "--version"]),
            "envoy": "Envoy " + re.sub(r".*version: [0-9a-f]+/([^/ ]+).*", r"\1", version([envoy, "--version"])),
            "h2load": version(["h2load", "--version"]), "wrk": re.sub(r" \[.*", "", version(["wrk", "-v"])),
        },
        "checks": checks,
        "rows": rows,
        "rss_kib": {"idle": idle_rss, "after_load": after_rss, "peak": peak_rss},
        "ratios": ratios(rows),
    }
    scale = ENV.get("SCALE_TABLE_FILE")
    if scale and Path(scale).exists():
        result["scale"] = Path(scale).read_text()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "BENCHMARKS.json").write_text(json.dumps(result, indent=1) + "\n")
    (OUT_DIR / "BENCHMARKS.md").write_text(markdown(result))
    log(f"wrote {OUT_DIR / 'BENCHMARKS.md'} and {OUT_DIR / 'BENCHMARKS.json'}")


def find(rows: list[dict[str, Any]], group: str, server: str, c: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["group"].startswith(group) and r["server"] == server and r["concurrency"] == c),
                None)


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Throughput ratios and p99 / CPU comparisons of the medians, each against its baseline;
    within a row, also the ratio of each round's pair (the two servers timed back to back)."""
    out = []

    def add(what: str, group: str, server: str, base: str, c: int, base_group: str | None = None) -> None:
        a, b = find(rows, group, server, c), find(rows, base_group or group, base, c)
        if a and b:
            same_row = a["group"] == b["group"]
            paired = [x["req_s"] / y["req_s"] for x, y in zip(a["runs"], b["runs"])] if same_row else []
            out.append({"comparison": what, "concurrency": c, "server": server, "baseline": base,
                        "req_s_ratio": a["req_s"]["median"] / b["req_s"]["median"],
                        "req_s_ratio_paired": median_range(paired) if paired else None,
                        "p99_ms": [a["p99_ms"]["median"], b["p99_ms"]["median"]],
                        "p99_ratio": a["p99_ms"]["median"] / b["p99_ms"]["median"],
                        "cpu_us_per_req": [a["cpu_us_per_req"]["median"], b["cpu_us_per_req"]["median"]],
                        "cpu_us_extra": a["cpu_us_per_req"]["median"] - b["cpu_us_per_req"]["median"]})

    for c in (1, 8, 64):
        for s in ("Gatehouse, audit off", "Gatehouse, bundled config (audit on)"):
            add("ext_authz Check vs the empty tonic server", "ext_authz Check, gRPC", s, "empty tonic server", c)
        for g in ("CheckResources, gRPC", "CheckResources, HTTP", "PlanResources, gRPC", "PlanResources, HTTP"):
            add(f"{g} vs Cerbos 0.55", g, "Gatehouse, audit off", "Cerbos 0.55", c)
    # The most any tonic server answers over gRPC here, against Cerbos's CheckResources rate:
    # the empty server's bare Check (no decision, an empty answer) bounds a tonic CheckResources.
    for c in (8, 64):
        add("ceiling: the empty tonic server's bare Check vs Cerbos 0.55's CheckResources, gRPC",
            "ext_authz Check, gRPC", "empty tonic server", "Cerbos 0.55", c, base_group="CheckResources, gRPC")
    # The multiplexed rows (2 connections × 32 streams), against the same baselines.
    for s in ("Gatehouse, audit off", "Gatehouse, bundled config (audit on)"):
        add("ext_authz Check, multiplexed, vs the empty tonic server", MUX_AUTHZ, s, "empty tonic server", 64)
    add("CheckResources, multiplexed gRPC vs Cerbos 0.55", MUX_CHECK, "Gatehouse, audit off", "Cerbos 0.55", 64)
    add("ceiling, multiplexed: the empty tonic server's bare Check vs Cerbos 0.55's CheckResources", MUX_AUTHZ,
        "empty tonic server", "Cerbos 0.55", 64, base_group=MUX_CHECK)
    for s in ("Envoy + empty tonic server", "Envoy + Gatehouse, audit off",
              "Envoy + Gatehouse, bundled config (audit on)"):
        add("Envoy vs Envoy without authz", "Envoy", s, "Envoy, no authz", 64)
    for s in ("Envoy + Gatehouse, audit off", "Envoy + Gatehouse, bundled config (audit on)"):
        add("Envoy + Gatehouse vs Envoy + empty tonic server", "Envoy", s, "Envoy + empty tonic server", 64)
    return out


def fmt_range(m: dict[str, float], digits: int = 0) -> str:
    f = f"{{:,.{digits}f}}"
    return f"{f.format(m['median'])} ({f.format(m['min'])}–{f.format(m['max'])})"


def markdown(res: dict[str, Any]) -> str:
    m, s = res["machine"], res["settings"]
    la = lambda xs: " / ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    lines = [
        "# Benchmarks",
        "",
        "Written by `benches/load.sh` (benches/load/harness.py); the same figures as JSON in",
        "[BENCHMARKS.json](BENCHMARKS.json). Everything runs on one machine, load generators included,",
        "so the absolute figures depend on it: compare the ratios, which are taken within one run.",
        "",
        f"- Command: `{res['command']}`",
        f"- Date: {res['started']} to {res['finished']} (UTC)",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}",
        f"- Load average (1/5/15 min) at start {la(res['load_average_at_start'])}, at end "
        f"{la(res['load_average_at_end'])}; highest 1-min figure before a run "
        f"{res['load_average_max_before_a_run']:.2f}",
        f"- Each row: {s['rounds']} rounds of {s['seconds']:g} s after {s['warmup_seconds']:g} s of warm-up "
        f"(the Envoy rows: {s.get('envoy_rounds', s['rounds'])} rounds of {s.get('envoy_seconds', s['seconds']):.3g} s), "
        "rounds alternating between the servers of a row; medians with (min–max) of the rounds",
        *([f"- Steadiness of the machine: a fixed CPU loop, timed before every run while the servers idle, "
           f"took {fmt_range(res['steadiness_probe_ms'], 1)} ms: the same work took up to "
           f"{100 * (res['steadiness_probe_ms']['max'] / res['steadiness_probe_ms']['min'] - 1):.0f}% longer "
           "in one gap between runs than in another, with nothing of ours running"]
          if res.get("steadiness_probe_ms") else []),
        f"- Versions: Gatehouse {res['versions']['gatehouse']} (Cargo profile `{res['settings'].get('profile', 'release')}`, "
        f"as the empty server and the upstream), {res['versions']['cerbos']}, "
        f"{res['versions']['envoy']}, {res['versions']['h2load']}, {res['versions']['wrk']}",
        "- Policies and requests: `../shared/bench/policies`; CheckResources = "
        "`../shared/bench/check_resources.json` (bob, doc-1, read/update/approve); ext_authz Check = "
        "`GET /documents/doc-1` with bob's RS256 bearer JWT and the document's attributes in `x-doc-*` "
        "headers; PlanResources = `benches/load/plan_resources.json` (alice, `read`: a conditional plan)",
        "- Servers: Gatehouse with audit off, and with the bundled `gatehouse.yaml` (audit of every "
        "decision to stdout, redirected to a file; the document attributes from headers instead of the "
        "example app); Cerbos 0.55 with its defaults (audit off); Envoy with `envoy/envoy.yaml` minus "
        "its access log, default concurrency, in front of `examples/bench_upstream.rs` (always `200 ok`)",
        "- Concurrency: requests in flight. h2load opens a connection per request in flight (`-c N -m 1`), "
        "except in the multiplexed rows, where 2 connections carry 32 streams each (`-c 2 -m 32`), as a "
        "gRPC channel does (Envoy's ext_authz client holds one connection per worker thread); wrk keeps "
        "a connection per request in flight",
        "- CPU µs per request: utime + stime of the server's process(es) from `/proc/<pid>/stat`, "
        "sampled inside the timed window, divided by the requests served; Envoy rows add Envoy, the "
        "authz server and the upstream (per process in the JSON); the load generator's CPU (h2load or "
        "wrk, from `getrusage`, warm-up included) divided by the requests it sent at the timed rate",
        "",
        "Checked before timing (each server must give these answers, or the run stops):",
        "",
    ]
    lines += [f"- {c}" for c in res["checks"]]
    lines += ["", "## Ratios (medians of this run)", "",
              "The req/s ratio is the ratio of the two medians; the paired one is the median (min–max) of "
              "each round's ratio, the two servers timed back to back in that round, which cancels what "
              "the machine's speed does between rounds (see the steadiness probe above).", "",
              "| comparison | concurrency | server | req/s ratio | paired, by round | p99 ms (server / baseline) | "
              "CPU µs/req (server / baseline) |", "|---|---:|---|---:|---:|---|---|"]
    for r in res["ratios"]:
        paired = r.get("req_s_ratio_paired")
        paired_text = (f"{paired['median']:.2f}× ({paired['min']:.2f}–{paired['max']:.2f})" if paired else "")
        lines.append(f"| {r['comparison']} | {r['concurrency']} | {r['server']} | {r['req_s_ratio']:.2f}× | "
                     f"{paired_text} | {r['p99_ms'][0]:.2f} / {r['p99_ms'][1]:.2f} | "
                     f"{r['cpu_us_per_req'][0]:.0f} / {r['cpu_us_per_req'][1]:.0f} |")
    lines += ["", "## Rows", "",
              "| scenario | server | concurrency | req/s | p50 ms | p99 ms | CPU µs/req | "
              "load generator CPU µs/req |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        client = r.get("load_generator_cpu_us_per_req")
        lines.append(f"| {r['group']} | {r['server']} | {r['concurrency']} | {fmt_range(r['req_s'])} | "
                     f"{fmt_range(r['p50_ms'], 2)} | {fmt_range(r['p99_ms'], 2)} | "
                     f"{fmt_range(r['cpu_us_per_req'])} | {fmt_range(client) if client else ''} |")
    lines += ["", "## Gatehouse's CPU by thread (ext_authz Check)", "",
              "The same CPU per request, split by thread name (tokio workers serve the requests; "
              "`gatehouse-audit` is the audit log's writer, which formats and writes the records "
              "off the request path), medians of the rounds:", "",
              "| server | concurrency | thread | CPU µs/req |", "|---|---:|---|---:|"]
    for r in res["rows"]:
        if not r["group"].startswith("ext_authz") or not r["server"].startswith("Gatehouse"):
            continue
        for proc, threads in r.get("cpu_us_per_req_by_thread", {}).items():
            for t, v in threads.items():
                if v["median"] >= 0.05:
                    label = r["server"] + (", multiplexed" if r["group"] == MUX_AUTHZ else "")
                    lines.append(f"| {label} | {r['concurrency']} | {t} | {fmt_range(v, 1)} |")
    rss = res["rss_kib"]
    lines += ["", "## Memory", "",
              "RSS after start and the checks (idle), after all rows, and the peak (VmHWM), MiB:", "",
              "| process | idle | after the rows | peak |", "|---|---:|---:|---:|"]
    for name in rss["idle"]:
        lines.append(f"| {name} | {rss['idle'][name] / 1024:.1f} | {rss['after_load'][name] / 1024:.1f} | "
                     f"{rss['peak'][name] / 1024:.1f} |")
    if res.get("scale"):
        lines += ["", "## Scale: 1 to 10,000 generated policies (benches/scale.sh)", "", res["scale"].rstrip()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    def _exit(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    signal.signal(signal.SIGHUP, _exit)
    try:
        main()
    finally:
        stop_all()
        if ENV.get("LOAD_KEEP_WORK"):
            log(f"logs and configs kept in {WORK}")
        else:
            shutil.rmtree(WORK, ignore_errors=True)
