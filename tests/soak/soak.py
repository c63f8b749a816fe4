#!/usr/bin/env python3
"""Soak test (issue 12; outside CI): Envoy + Gatehouse + the FastAPI app for a while at a
steady moderate load, with faults, every answer checked.

    bash scripts/soak.sh                      # 30 minutes (the default)
    bash scripts/soak.sh --duration 300 --rps 20 --out target/soak/short

What runs (the e2e suite's startup code, tests/e2e/stack.py, on free 127.0.0.1 ports):
the app under uvicorn, `gatehouse serve` on the bundled gatehouse.yaml (policies copied to a
scratch directory, the JWT keys served by a small JWKS endpoint of this script, attribute
caching off so that every check of a document asks the app), and Envoy (envoy/envoy.yaml,
gRPC ext_authz) in front.

What happens meanwhile:
  * load: `--rps` requests per second from `--workers` threads, a fixed mix of allowed,
    denied, unauthenticated and malformed requests (forged and expired tokens, dot
    segments, bad escapes, spoofed x-gatehouse-* headers), each with its expected answer;
  * a policy edit every 30 s, cycling through: a good edit of document.yaml, a broken YAML
    file, a good extra policy, a policy with a broken CEL expression; each is checked 5 s
    later in /_gatehouse/status (good: new revision, no error; broken: error shown, the
    last good revision still in force);
  * a JWKS key rotation: at 30% of the run a new key is published beside the old one, the
    clients sign with the new key from then on, and at 45% the old key is retired: fresh
    tokens signed with the old key are refused from then on (after one refresh interval);
  * the attribute source (the app's /internal/documents/{id}/attributes) fails (503) for
    60 s from 60% of the run: every request that needs attributes must be denied.

Every 10 s it samples Gatehouse's RSS, open file descriptors and threads (/proc). The
report (report.md and report.json in --out) gives the wrong answers (must be 0), allows
during faults (must be 0), the policy checks, the samples (flat within 10% of their median
after the warm-up) and p50/p99 latency per minute. Exit status 0 only if all hold.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import os
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "examples" / "fastapi"))

import httpx  # noqa: E402
import jwt as pyjwt  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

import mint_token  # noqa: E402
import stack  # noqa: E402

EDIT_INTERVAL = 30.0
JWKS_REFRESH = 10  # extAuthz...jwks.refreshSeconds
FAULT_SECONDS = 60.0
SAMPLE_INTERVAL = 10.0
TOKEN_REUSE_SECONDS = 300

ALLOW = {200}
DENY = {403}
UNAUTH = {401}
MALFORMED = {400, 403, 404}


# === Keys and tokens =====================================================================


class Keys:
    """The old key (the dev key, kid dev-1) and a new one made here (kid soak-2)."""

    def __init__(self) -> None:
        self.old_pem = mint_token.PRIVATE_KEY.read_bytes()
        old_jwks = json.loads((stack.APP_DIR / "dev-jwks.json").read_text())
        (self.old_jwk,) = old_jwks["keys"]
        new = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        from cryptography.hazmat.primitives import serialization

        self.new_pem = new.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        self.new_jwk = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(new.public_key()))
        self.new_jwk.update({"kid": "soak-2", "use": "sig", "alg": "RS256"})
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.stranger_pem = stranger.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption())
        self.lock = threading.Lock()
        self.published = [self.old_jwk]
        self.signing_new = False
        self.tokens: dict[tuple[Any, ...], str] = {}

    def jwks(self) -> bytes:
        with self.lock:
            return json.dumps({"keys": list(self.published)}).encode()

    def token(self, who: str, *, old: bool | None = None, fresh: bool = False,
              **overrides: Any) -> str:
        """A token for a preset, signed with the current key (or the old one). Clients
        reuse a token for 5 minutes, as they would; `fresh`: a new one (new `jti`) each
        time, which no verification cache has seen."""
        use_old = (not self.signing_new) if old is None else old
        epoch = int(time.time() // TOKEN_REUSE_SECONDS)
        key = (who, use_old, epoch, json.dumps(overrides, sort_keys=True))
        with self.lock:
            cached = None if fresh else self.tokens.get(key)
        if cached is not None:
            return cached
        claims = mint_token.claims_for(**mint_token.PRESETS[who])
        claims["jti"] = uuid.uuid4().hex
        claims.update(overrides)
        if use_old:
            token = mint_token.sign(claims, self.old_pem, "dev-1")
        else:
            token = mint_token.sign(claims, self.new_pem, "soak-2")
        if not fresh:
            with self.lock:
                self.tokens = {k: v for k, v in self.tokens.items() if k[2] == epoch}
                self.tokens[key] = token
        return token


def jwks_server(keys: Keys) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = keys.jwks()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that went away (timeout) is not our concern here

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# === Timeline ============================================================================


@dataclass
class Timeline:
    start: float
    duration: float
    warmup: float

    @property
    def rotate_publish(self) -> float:
        return self.start + 0.30 * self.duration

    @property
    def rotate_retire(self) -> float:
        return self.start + 0.45 * self.duration

    @property
    def fault_start(self) -> float:
        return self.start + 0.60 * self.duration

    @property
    def fault_end(self) -> float:
        return self.fault_start + FAULT_SECONDS

    def in_fault(self, t0: float, t1: float) -> str:
        """`strict` when the request ran wholly inside the fault, `edge` when it overlaps
        its start or end (either answer is right), `` otherwise."""
        # A check in flight when the fault starts or ends may see either side.
        lo, hi = self.fault_start, self.fault_end
        if t0 >= lo + 0.5 and t1 <= hi:
            return "strict"
        if t1 >= lo - 0.5 and t0 <= hi + 1.0:
            return "edge"
        return ""


# === Scenarios ===========================================================================


@dataclass
class Scenario:
    name: str
    kind: str  # allowed | denied | unauthenticated | malformed
    method: str
    path: str
    expected: set[int]
    token: Callable[[Keys], str | None] = lambda k: None
    headers: dict[str, str] = field(default_factory=dict)
    needs_attributes: bool = False
    stale_key: bool = False


def _t(who: str) -> Callable[[Keys], str]:
    return lambda k: k.token(who)


def scenarios() -> list[Scenario]:
    return [
        # allowed (the seed documents of examples/fastapi; expectations of test_authz.py)
        Scenario("alice reads 3 (same department)", "allowed", "GET", "/documents/3", ALLOW,
                 _t("alice"), needs_attributes=True),
        Scenario("bob reads 5 (confidential, cleared)", "allowed", "GET", "/documents/5", ALLOW,
                 _t("bob"), needs_attributes=True),
        Scenario("bot reads 2", "allowed", "GET", "/documents/2", ALLOW, _t("bot"),
                 needs_attributes=True),
        Scenario("root lists", "allowed", "GET", "/documents", ALLOW, _t("root")),
        Scenario("carol lists (a plan route: Gatehouse's filter)", "allowed", "GET", "/documents",
                 ALLOW, _t("carol")),
        Scenario("health (public)", "allowed", "GET", "/health", ALLOW),
        # denied
        Scenario("carol reads 1 (other department)", "denied", "GET", "/documents/1", DENY,
                 _t("carol"), needs_attributes=True),
        Scenario("alice reads 4", "denied", "GET", "/documents/4", DENY, _t("alice"),
                 needs_attributes=True),
        Scenario("carol reads 5 (confidential)", "denied", "GET", "/documents/5", DENY,
                 _t("carol"), needs_attributes=True),
        Scenario("bob approves 3 (archived)", "denied", "POST", "/documents/3/approve", DENY,
                 _t("bob"), needs_attributes=True),
        Scenario("bot deletes 2", "denied", "DELETE", "/documents/2", DENY, _t("bot"),
                 needs_attributes=True),
        Scenario("carol patches 1", "denied", "PATCH", "/documents/1", DENY, _t("carol"),
                 needs_attributes=True),
        Scenario("carol spoofs x-gatehouse-principal root", "denied", "GET", "/documents/1",
                 DENY, _t("carol"),
                 headers={"x-gatehouse-principal": "root", "x-gatehouse-roles": "admin"},
                 needs_attributes=True),
        # unauthenticated
        Scenario("no token", "unauthenticated", "GET", "/documents/1", UNAUTH),
        Scenario("expired token", "unauthenticated", "GET", "/documents/3", UNAUTH,
                 lambda k: k.token("alice", exp=1_700_000_000)),
        Scenario("token signed by a stranger's key as dev-1", "unauthenticated", "GET",
                 "/documents/3", UNAUTH,
                 lambda k: mint_token.sign(mint_token.claims_for(**mint_token.PRESETS["alice"]),
                                           k.stranger_pem, "dev-1")),
        Scenario("token with an unknown kid", "unauthenticated", "GET", "/documents/3", UNAUTH,
                 lambda k: mint_token.sign(mint_token.claims_for(**mint_token.PRESETS["root"]),
                                           k.stranger_pem, "evil")),
        Scenario("alice with a fresh token of the old key (retired at 45%)", "allowed", "GET",
                 "/documents/3", ALLOW, lambda k: k.token("alice", old=True, fresh=True),
                 needs_attributes=True, stale_key=True),
        # malformed
        Scenario("garbage bearer", "malformed", "GET", "/documents/3", UNAUTH,
                 lambda k: "not.a.jwt"),
        Scenario("alg none", "malformed", "GET", "/documents/3", UNAUTH,
                 lambda k: pyjwt.encode(mint_token.claims_for(**mint_token.PRESETS["root"]),
                                        None, algorithm="none")),
        Scenario("dot segments", "malformed", "GET", "/documents/../internal/documents/1/attributes",
                 MALFORMED, _t("carol")),
        Scenario("encoded dot segments", "malformed", "GET", "/documents/%2e%2e/documents/1",
                 MALFORMED, _t("carol")),
        Scenario("bad escape", "malformed", "GET", "/documents/%zz", MALFORMED, _t("carol")),
        Scenario("double slash", "malformed", "GET", "//documents/1", MALFORMED, _t("carol")),
        Scenario("unknown method", "malformed", "PROPFIND", "/documents/1", MALFORMED | {405},
                 _t("carol")),
    ]


def expected_for(s: Scenario, tl: Timeline, t0: float, t1: float) -> tuple[set[int], bool]:
    """The answers that are right for `s` sent at t0 and answered at t1, and whether the
    request ran during a fault (where an allow is never right for a request that needs
    attributes or presents the retired key)."""
    want = set(s.expected)
    fault = False
    if s.stale_key and t1 >= tl.rotate_retire:
        # After the retirement the old key is gone once the set is refreshed.
        if t0 >= tl.rotate_retire + JWKS_REFRESH + 5:
            want, fault = set(UNAUTH), True
        else:
            want |= UNAUTH
    if s.needs_attributes and want & ALLOW:
        where = tl.in_fault(t0, t1)
        if where == "strict":
            want, fault = set(DENY), True
        elif where == "edge":
            want |= DENY
    return want, fault


# === Load ================================================================================


@dataclass
class Result:
    t0: float
    t1: float
    scenario: str
    kind: str
    status: int
    want: list[int]
    fault: bool


def headers_for(s: Scenario, keys: Keys) -> dict[str, str]:
    headers = dict(s.headers)
    tok = s.token(keys)
    if tok is not None:
        headers["authorization"] = f"Bearer {tok}"
    return headers


def send(port: int, s: Scenario, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(s.method, s.path, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.putheader("content-length", "0")
        conn.endheaders()
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return 0
    finally:
        conn.close()


class Load:
    def __init__(self, port: int, keys: Keys, tl: Timeline, rps: float, workers: int) -> None:
        self.port, self.keys, self.tl, self.rps = port, keys, tl, rps
        self.scenarios = scenarios()
        self.results: list[Result] = []
        self.lock = threading.Lock()
        self.ticket = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(workers)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def worker(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                n = self.ticket
                self.ticket += 1
            due = self.tl.start + n / self.rps
            delay = due - time.time()
            if delay > 0:
                if self.stop.wait(delay):
                    return
            s = self.scenarios[n % len(self.scenarios)]
            headers = headers_for(s, self.keys)
            t0 = time.time()
            status = send(self.port, s, headers)
            t1 = time.time()
            want, fault = expected_for(s, self.tl, t0, t1)
            with self.lock:
                self.results.append(Result(t0, t1, s.name, s.kind, status, sorted(want), fault))


# === Samples, policy edits, faults =======================================================


def sample(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_kb": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"].strip()),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


GOOD_EXTRA = """apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: soak_thing
  version: default
  rules:
    - actions: ["touch{n}"]
      effect: EFFECT_ALLOW
      roles: ["user"]
"""
BROKEN_YAML = "apiVersion: api.cerbos.dev/v1\nresourcePolicy: [\n  resource: soak_thing {n}\n"
BROKEN_CEL = GOOD_EXTRA.replace('roles: ["user"]',
                                'roles: ["user"]\n      condition:\n        match:\n          expr: "R.attr.( == {n}"')


class PolicyEditor:
    """Edits the policy directory every 30 s; checks each edit in /_gatehouse/status."""

    def __init__(self, policies: Path, admin_port: int) -> None:
        self.policies = policies
        self.admin = admin_port
        self.document = policies / "resource_policies" / "document.yaml"
        self.original = self.document.read_text()
        self.extra = policies / "resource_policies" / "soak_extra.yaml"
        self.n = 0
        self.checks: list[dict[str, Any]] = []

    def status(self) -> dict[str, Any]:
        return httpx.get(f"http://127.0.0.1:{self.admin}/_gatehouse/status", timeout=5).json()

    def edit(self) -> None:
        self.n += 1
        before = self.status()["revision"]
        step = self.n % 4
        if step == 1:  # good: document.yaml gets a rule for an action no request uses,
            # and the extra policy the last (broken) edit left is made whole again
            self.extra.write_text(GOOD_EXTRA.replace("{n}", str(self.n)))
            self.document.write_text(self.original + (
                f"\n    # soak edit {self.n}\n    - name: soak-{self.n}\n"
                f"      actions: [\"soak_unused_{self.n}\"]\n      effect: EFFECT_ALLOW\n"
                f"      roles: [\"user\"]\n"))
            kind, good = "document.yaml rule added, extra policy fixed", True
        elif step == 2:
            self.extra.write_text(BROKEN_YAML.replace("{n}", str(self.n)))
            kind, good = "broken YAML", False
        elif step == 3:
            self.extra.write_text(GOOD_EXTRA.replace("{n}", str(self.n)))
            kind, good = "extra policy (fixes the broken file)", True
        else:
            self.extra.write_text(BROKEN_CEL.replace("{n}", str(self.n)))
            kind, good = "broken CEL", False
        time.sleep(5)
        after = self.status()
        if good:
            ok = after["lastError"] is None and after["revision"] != before
        else:
            ok = after["lastError"] is not None and after["revision"] == before
        self.checks.append({"edit": self.n, "kind": kind, "good": good, "ok": ok,
                            "revision_before": before, "revision_after": after["revision"],
                            "error": (after["lastError"] or "")[:200]})


# === Report ==============================================================================


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100 * (len(values) - 1)))))
    return values[k]


# Absolute slack on top of the 10%: descriptors follow the connections in flight, and
# tokio's blocking threads (file reads of a reload) linger 10 s after use.
SLACK = {"rss_kb": 0, "fds": 3, "threads": 2}


def flatness(samples: list[dict[str, Any]], key: str, after: float) -> dict[str, Any]:
    vals = [s[key] for s in samples if s["t"] >= after]
    if not vals:
        return {"ok": False, "samples": 0}
    med = statistics.median(vals)
    lo, hi = min(vals), max(vals)
    first, last = vals[: max(1, len(vals) // 10)], vals[-max(1, len(vals) // 10):]
    drift = (statistics.mean(last) - statistics.mean(first)) / max(statistics.mean(first), 1)
    band = max(0.1 * med, SLACK[key])
    ok = lo >= med - band and hi <= med + band
    return {"ok": ok, "samples": len(vals), "median": med, "min": lo, "max": hi,
            "drift": round(drift, 4)}


def report(out: Path, args: argparse.Namespace, tl: Timeline, load: Load,
           samples: list[dict[str, Any]], editor: PolicyEditor, extra: dict[str, Any]) -> bool:
    results = load.results
    # Envoy answers 503 when Gatehouse does not answer within its ext_authz timeout
    # (0.5 s, fail closed): reported apart, as availability; every other answer that is
    # not the expected one is wrong.
    def timed_out(r: Result) -> bool:
        return r.status in (0, 503) and r.status not in r.want

    wrong = [r for r in results if r.status not in r.want and not timed_out(r)]
    closed = [r for r in results if timed_out(r)]
    closed_allow = [r for r in closed if set(r.want) & ALLOW]
    fault_allows = [r for r in results if r.fault and 200 <= r.status < 300]
    by_kind: dict[str, dict[str, int]] = {}
    for r in results:
        k = by_kind.setdefault(r.kind, {"requests": 0, "2xx": 0, "wrong": 0, "503": 0})
        k["requests"] += 1
        k["2xx"] += 200 <= r.status < 300
        k["wrong"] += r.status not in r.want and not timed_out(r)
        k["503"] += timed_out(r)
    by_scenario: dict[str, dict[str, int]] = {}
    for r in results:
        counts = by_scenario.setdefault(r.scenario, {})
        counts[str(r.status)] = counts.get(str(r.status), 0) + 1
    minutes: list[dict[str, Any]] = []
    for m in range(int(tl.duration // 60) + 1):
        lat = [(r.t1 - r.t0) * 1000 for r in results if m * 60 <= r.t0 - tl.start < (m + 1) * 60]
        if lat:
            minutes.append({"minute": m, "requests": len(lat),
                            "p50_ms": round(percentile(lat, 50), 2),
                            "p99_ms": round(percentile(lat, 99), 2),
                            "max_ms": round(max(lat), 2)})
    warm = tl.start + tl.warmup
    flat = {k: flatness(samples, k, warm) for k in ("rss_kb", "fds", "threads")}
    during_fault = [r for r in results if r.fault]
    policy_ok = all(c["ok"] for c in editor.checks) and len(editor.checks) > 0
    passed = (not wrong and not fault_allows and policy_ok and all(f["ok"] for f in flat.values())
              and extra["gatehouse_alive"])
    data = {
        "passed": passed,
        "duration_s": tl.duration, "rps": args.rps, "requests": len(results),
        "wrong_answers": len(wrong), "allows_during_faults": len(fault_allows),
        "fail_closed_503": len(closed), "fail_closed_503_where_allow_expected": len(closed_allow),
        "requests_during_faults": len(during_fault),
        "by_kind": by_kind, "by_scenario": by_scenario, "policy_edits": editor.checks, "flat_after_warmup": flat,
        "warmup_s": tl.warmup, "latency_per_minute": minutes,
        "timeline_s": {"jwks_new_key_published": round(tl.rotate_publish - tl.start),
                       "jwks_old_key_retired": round(tl.rotate_retire - tl.start),
                       "attributes_down": [round(tl.fault_start - tl.start),
                                           round(tl.fault_end - tl.start)]},
        "samples": samples, "first_wrong": [r.__dict__ for r in wrong[:20]], **extra,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(data, indent=2, default=str))
    lines = [
        f"# Soak report ({'PASSED' if passed else 'FAILED'})", "",
        f"{tl.duration:.0f} s at {args.rps} req/s through Envoy: {len(results)} requests, "
        f"{len(wrong)} wrong answers, {len(fault_allows)} allows during faults "
        f"({len(during_fault)} requests ran during a fault); {len(closed)} answered 503 by Envoy "
        f"because Gatehouse did not answer within ext_authz's 0.5 s timeout (fail closed; "
        f"{len(closed_allow)} of them where an allow was expected).", "",
        "| kind | requests | 2xx | wrong | 503 (timeout) |", "|---|---:|---:|---:|---:|",
        *[f"| {k} | {v['requests']} | {v['2xx']} | {v['wrong']} | {v['503']} |"
          for k, v in sorted(by_kind.items())],
        "", "Answers per scenario (status: count):", "",
        *[f"- {name}: " + ", ".join(f"{k}: {v}" for k, v in sorted(c.items()))
          for name, c in by_scenario.items()],
        "", f"Policy edits: {len(editor.checks)}, {sum(c['ok'] for c in editor.checks)} checked OK "
        f"({sum(not c['good'] for c in editor.checks)} broken ones kept the last good set).", "",
        f"Gatehouse after the {tl.warmup:.0f} s warm-up (flat: every sample within 10% of the "
        f"median, or {SLACK['fds']} descriptors / {SLACK['threads']} threads when that is more):", "",
        "| metric | samples | median | min | max | drift first->last 10% | flat |", "|---|---:|---:|---:|---:|---:|---|",
        *[f"| {k} | {v.get('samples')} | {v.get('median')} | {v.get('min')} | {v.get('max')} | "
          f"{v.get('drift')} | {'yes' if v['ok'] else 'NO'} |" for k, v in flat.items()],
        "", "Latency through Envoy per minute:", "", "| minute | requests | p50 ms | p99 ms | max ms |",
        "|---:|---:|---:|---:|---:|",
        *[f"| {m['minute']} | {m['requests']} | {m['p50_ms']} | {m['p99_ms']} | {m['max_ms']} |" for m in minutes],
        "", f"Gatehouse still running at the end: {extra['gatehouse_alive']}; "
        f"panics in /_gatehouse/status: {extra.get('panics')}; exit code after SIGTERM: {extra.get('exit_code')}",
    ]
    if wrong:
        lines += ["", "First wrong answers:", ""] + [
            f"- {r.scenario}: {r.status}, expected {r.want} at +{r.t0 - tl.start:.1f} s" for r in wrong[:20]]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return passed


# === Main ================================================================================


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=1800.0, help="seconds (default 1800)")
    ap.add_argument("--rps", type=float, default=20.0, help="requests per second (default 20)")
    ap.add_argument("--workers", type=int, default=16,
                    help="client threads (default 16: enough to hold --rps when answers are slow)")
    ap.add_argument("--warmup", type=float, default=None, help="seconds (default: 10%% of the run, at least 60)")
    ap.add_argument("--out", type=Path, default=REPO / "target" / "soak" / time.strftime("%Y%m%d-%H%M%S"))
    args = ap.parse_args()
    out: Path = args.out
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)

    keys = Keys()
    jwks = jwks_server(keys)
    policies = work / "policies"
    if policies.exists():
        import shutil

        shutil.rmtree(policies)
    import shutil

    shutil.copytree(stack.POLICIES, policies)

    procs: list[stack.Proc] = []
    try:
        gh_http = stack.free_port()
        app = stack.start_app(stack.free_port(), work, gatehouse_api=f"http://127.0.0.1:{gh_http}")
        procs.append(app)
        app_url = f"http://127.0.0.1:{app.cmd[app.cmd.index('--port') + 1]}"
        base = stack.gatehouse_config(0, 0, app_url)["extAuthz"]
        principal = copy.deepcopy(base["principal"])
        for src in principal["sources"]:
            if "jwt" in src:
                src["jwt"]["jwks"] = {"url": f"http://127.0.0.1:{jwks.server_port}/jwks.json",
                                      "refreshSeconds": JWKS_REFRESH}
        routes = copy.deepcopy(base["routes"])
        for r in routes:
            fetch = (r.get("attributes") or {}).get("fetch")
            if fetch:
                fetch["cacheTtlMs"] = 0
        gh = stack.start_gatehouse("soak", app_url, work, http_port=gh_http,
                                   extra={"policies": {"directory": str(policies)}},
                                   ext_authz={"principal": principal, "routes": routes})
        procs.append(gh.proc)
        envoy = stack.start_envoy("soak", stack.envoy_config(
            stack.ENVOY_YAML, listen_port=stack.free_port(), admin_port=stack.free_port(),
            app_port=int(app_url.rsplit(":", 1)[1]), gatehouse_port=gh.grpc_port), work)
        procs.append(envoy.proc)

        duration = args.duration
        warmup = args.warmup if args.warmup is not None else max(60.0, 0.1 * duration)
        tl = Timeline(time.time() + 1, duration, warmup)
        load = Load(envoy.port, keys, tl, args.rps, args.workers)
        editor = PolicyEditor(policies, gh.admin_port)
        samples: list[dict[str, Any]] = []
        print(f"soak: {duration:.0f} s at {args.rps} req/s; logs and report in {out}", flush=True)
        load.start()
        next_sample = tl.start
        next_edit = tl.start + EDIT_INTERVAL
        published = switched = retired = fault_on = fault_off = False
        edit_thread: threading.Thread | None = None
        while (now := time.time()) < tl.start + duration:
            if now >= next_sample:
                samples.append({"t": now, "elapsed_s": round(now - tl.start), **sample(gh.proc.pid)})
                next_sample += SAMPLE_INTERVAL
                done = len(load.results)
                bad = sum(r.status not in r.want for r in load.results)
                print(f"  +{now - tl.start:6.0f} s  {done} requests, {bad} wrong, "
                      f"rss {samples[-1]['rss_kb']} kB, fds {samples[-1]['fds']}, "
                      f"threads {samples[-1]['threads']}", flush=True)
            if now >= next_edit and (edit_thread is None or not edit_thread.is_alive()):
                edit_thread = threading.Thread(target=editor.edit, daemon=True)
                edit_thread.start()
                next_edit += EDIT_INTERVAL
            if not published and now >= tl.rotate_publish:
                with keys.lock:
                    keys.published = [keys.old_jwk, keys.new_jwk]
                published = True
            if published and not switched and now >= tl.rotate_publish + JWKS_REFRESH + 5:
                keys.signing_new = True
                switched = True
            if not retired and now >= tl.rotate_retire:
                with keys.lock:
                    keys.published = [keys.new_jwk]
                retired = True
            if not fault_on and now >= tl.fault_start:
                httpx.post(f"{app_url}/internal/test/attributes-down", params={"down": "true"}, timeout=5)
                fault_on = True
            if fault_on and not fault_off and now >= tl.fault_end:
                httpx.post(f"{app_url}/internal/test/attributes-down", params={"down": "false"}, timeout=5)
                fault_off = True
            time.sleep(0.2)
        load.join()
        if edit_thread is not None:
            edit_thread.join(timeout=30)
        alive = gh.proc.alive()
        panics = None
        if alive:
            panics = httpx.get(f"http://127.0.0.1:{gh.admin_port}/_gatehouse/status", timeout=5).json()["panics"]
        exit_code = gh.proc.stop()
        passed = report(out, args, tl, load, samples, editor,
                        {"gatehouse_alive": alive, "panics": panics, "exit_code": exit_code})
        return 0 if passed else 1
    finally:
        for p in reversed(procs):
            p.stop()
        jwks.shutdown()


if __name__ == "__main__":
    sys.exit(main())
