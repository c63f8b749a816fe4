"""Assertions shared by the tests that run through Gatehouse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx

import stack

DECISION_ID = "x-gatehouse-decision-id"


class Client:
    """httpx against one Envoy, with `as_=` choosing whose token is sent."""

    def __init__(self, envoy: stack.Envoy, tokens: dict[str, str]) -> None:
        self.envoy = envoy
        self.tokens = tokens
        self.http = httpx.Client(base_url=envoy.url, timeout=10)

    def request(self, method: str, path: str, as_: str | None = None, token: str | None = None,
                headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        h = dict(headers or {})
        tok = token if token is not None else (self.tokens[as_] if as_ else None)
        if tok is not None:
            h["authorization"] = f"Bearer {tok}"
        return self.http.request(method, path, headers=h, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def raw(self, method: str, path: str, as_: str | None = None,
            headers: dict[str, str] | None = None) -> stack.RawResponse:
        h = dict(headers or {})
        if as_:
            h["authorization"] = f"Bearer {self.tokens[as_]}"
        return stack.raw_request(self.envoy.port, method, path, h)

    def close(self) -> None:
        self.http.close()


def assert_allowed(r: httpx.Response, app: Any, mark: int, principal: str, roles: list[str],
                   status: int = 200) -> dict[str, Any]:
    """Allowed, and exactly one request reached the app, carrying Gatehouse's headers."""
    assert r.status_code == status, f"{r.status_code} {r.text}"
    body = r.json()
    seen = body["seen_by"]
    assert seen["principal"] == principal, seen
    assert seen["roles"] == roles, seen
    assert seen["decision_id"], f"no x-gatehouse-decision-id reached the app: {seen}"
    hits = app.since(mark)
    assert len(hits) == 1, hits
    assert hits[0]["principal"] == principal
    assert hits[0]["decision_id"] == seen["decision_id"]
    return body


def assert_denied(r: httpx.Response, app: Any, mark: int, status: int = 403) -> dict[str, Any]:
    """Denied by Gatehouse: FastAPI-style JSON body, a decision id, nothing reached the app."""
    assert r.status_code == status, f"{r.status_code} {r.text}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert "detail" in body, body
    assert r.headers.get(DECISION_ID), f"denial without {DECISION_ID}: {dict(r.headers)}"
    assert "x-seen-principal" not in r.headers  # the app did not answer
    assert app.since(mark) == [], app.since(mark)
    return body


def assert_unauthenticated(r: httpx.Response, app: Any, mark: int) -> None:
    assert r.status_code == 401, f"{r.status_code} {r.text}"
    challenge = r.headers.get("www-authenticate", "")
    assert challenge.lower().startswith("bearer"), f"WWW-Authenticate: {challenge!r}"
    assert "x-seen-principal" not in r.headers
    assert app.since(mark) == [], app.since(mark)


def create(client: Any, as_: str, **fields: Any) -> str:
    """POST /documents as `as_`; returns the new id."""
    doc = {"title": "e2e", "department": "engineering", **fields}
    r = client.post("/documents", as_=as_, json=doc)
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    return r.json()["id"]


# === Crafted tokens ======================================================================


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any], alg: str = "none") -> str:
    header = {"alg": alg, "typ": "JWT", "kid": "dev-1"}
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}."


def hs256_token(claims: dict[str, Any], secret: bytes) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": "dev-1"}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(sig)}"


def now() -> int:
    return int(time.time())
