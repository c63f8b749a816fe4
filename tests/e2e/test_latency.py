"""Latency probe (informational): 200 sequential GETs through Envoy with and without
ext_authz. Prints p50/p99 at the end of the run; asserts only that requests succeed."""

from __future__ import annotations

import statistics
import time

import httpx

import stack

N = 200
WARMUP = 20


def _probe(label: str, http: httpx.Client, path: str, headers: dict[str, str]) -> None:
    for _ in range(WARMUP):
        assert http.get(path, headers=headers).status_code == 200
    samples = []
    for _ in range(N):
        t0 = time.perf_counter()
        r = http.get(path, headers=headers)
        samples.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text
    q = statistics.quantiles(samples, n=100)
    stack.REPORT_LINES.append(
        f"{label:<48} p50 {q[49]:6.2f} ms   p99 {q[98]:6.2f} ms   ({N} sequential GETs)"
    )


def test_latency_probe(envoy_bare, envoy_authz, envoy_jwt, tokens):
    bearer = {"authorization": f"Bearer {tokens['alice']}"}
    with httpx.Client(base_url=envoy_bare.url, timeout=10) as http:
        # No ext_authz: the identity headers are set by the client itself.
        _probe("no ext_authz          GET /documents/1", http, "/documents/1",
               {"x-gatehouse-principal": "alice", "x-gatehouse-roles": "user"})
    with httpx.Client(base_url=envoy_authz.url, timeout=10) as http:
        _probe("ext_authz             GET /health (public)", http, "/health", {})
        _probe("ext_authz             GET /documents/1", http, "/documents/1", bearer)
    with httpx.Client(base_url=envoy_jwt.url, timeout=10) as http:
        _probe("jwt_authn + ext_authz GET /documents/1", http, "/documents/1", bearer)
    stack.REPORT_LINES.append(
        f"(gatehouse: {stack.gatehouse_binary()}; with ext_authz alone Gatehouse verifies the "
        "RS256 token on each request, with jwt_authn Envoy does; fetched attributes are "
        "cached for cacheTtlMs=2000)"
    )
