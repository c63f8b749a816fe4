"""Envoy and the app without Gatehouse: the app's own defence in depth, what Envoy routes
and how it normalises paths, and that an unreachable Gatehouse fails closed."""

from __future__ import annotations

import httpx
import pytest

import stack

PRINCIPAL = {"x-gatehouse-principal": "alice", "x-gatehouse-roles": "user"}


def test_app_seed_attributes(app):
    assert app.attributes("2") == {"owner": "alice", "department": "engineering",
                                   "status": "in_review", "classification": "internal",
                                   "amount": 5000, "archived": False}
    assert app.attributes("3")["archived"] is True
    assert app.attributes("4")["department"] == "sales"
    assert httpx.get(f"{app.url}/internal/documents/999/attributes").status_code == 404


def test_app_rejects_requests_without_principal(app, envoy_plain):
    """Without ext_authz in front (envoy_plain) nothing sets x-gatehouse-principal: 401."""
    mark = app.mark()
    for method, path in [("GET", "/documents"), ("GET", "/documents/1"),
                         ("POST", "/documents"), ("DELETE", "/documents/1"),
                         ("POST", "/documents/2/approve")]:
        r = httpx.request(method, envoy_plain.url + path, content=b"{not json")
        assert r.status_code == 401, (method, path, r.text)
        assert "detail" in r.json()
    assert httpx.get(envoy_plain.url + "/health").status_code == 200
    assert app.attributes("1")["status"] == "draft"  # the DELETE above changed nothing
    assert all(e["principal"] is None for e in app.since(mark))


def test_app_echoes_what_it_saw(app, envoy_bare):
    r = httpx.get(envoy_bare.url + "/documents/1",
                  headers={**PRINCIPAL, "x-gatehouse-derived-roles": "owner,same_department",
                           "x-gatehouse-decision-id": "d-123",
                           "x-gatehouse-outputs": '[{"src": "r", "action": "read", "val": "v"}]'})
    assert r.status_code == 200
    body = r.json()
    assert body["owner"] == "alice"
    assert body["seen_by"] == {"principal": "alice", "roles": ["user"],
                               "derived_roles": ["owner", "same_department"],
                               "outputs": [{"src": "r", "action": "read", "val": "v"}],
                               "decision_id": "d-123"}
    assert r.headers["x-seen-principal"] == "alice"
    assert r.headers["x-seen-decision-id"] == "d-123"


def test_envoy_routes_only_documents_and_health(app, envoy_plain):
    mark = app.mark()
    for path in ["/internal/documents/1/attributes", "/internal/test/requests", "/",
                 "/documentsX", "/Documents/1", "/docs", "/openapi.json"]:
        r = httpx.get(envoy_plain.url + path, headers=PRINCIPAL)
        assert r.status_code == 404, path
    assert app.since(mark) == []


# Path as sent -> path the app receives through Envoy (None: Envoy answers by itself).
NORMALISED = [
    ("//documents/1", "/documents/1"),
    ("/documents//1", "/documents/1"),
    ("/documents/./1", "/documents/1"),
    ("/documents/4/../1", "/documents/1"),
    ("/documents/4/%2e%2e/1", "/documents/1"),
    ("/documents/4/%2E%2E/1", "/documents/1"),
    ("/documents/%31", "/documents/1"),          # unreserved characters are decoded
    ("/documents/1;/../4", "/documents/4"),
    ("/documents/../internal/documents/1/attributes", None),   # -> /internal/..., 404
    ("/documents/%2e%2e/internal/documents/1/attributes", None),
    ("/documents/1/../../internal/documents/1/attributes", None),
    ("/documents/%2F..", None),                  # escaped slash: 400
    ("/documents/1%2f", None),
    ("/documents%2F1", None),
    ("/documents/..%2f..%2finternal", None),
    ("/documents/1%5c..%5c4", None),             # escaped backslash: 400
    ("/documents/1%00", None),
    ("/documents/1#frag", None),
]


@pytest.mark.parametrize("sent,received", NORMALISED, ids=[p for p, _ in NORMALISED])
def test_envoy_normalises_before_routing(app, envoy_bare, sent, received):
    mark = app.mark()
    r = stack.raw_request(envoy_bare.port, "GET", sent, PRINCIPAL)
    hits = app.since(mark)
    if received is None:
        assert r.status in (400, 404), r
        assert hits == []
    else:
        assert [h["path"] for h in hits] == [received]
        assert hits[0]["raw_path"] == received
        assert r.status == 200


def test_headers_with_underscores_are_rejected(app, envoy_plain):
    mark = app.mark()
    r = stack.raw_request(envoy_plain.port, "GET", "/documents/1", {"x_gatehouse_principal": "root"})
    assert r.status == 400
    assert app.since(mark) == []


def test_envoy_strips_client_gatehouse_headers(app, envoy_plain):
    """envoy.yaml's early header mutation drops client-sent x-gatehouse-* headers, so even
    without ext_authz the app never sees them (and answers 401)."""
    mark = app.mark()
    r = httpx.get(envoy_plain.url + "/documents/1",
                  headers={"x-gatehouse-principal": "root", "X-Gatehouse-Roles": "admin",
                           "x-gatehouse-decision-id": "forged"})
    assert r.status_code == 401
    (hit,) = app.since(mark)
    assert hit["principal"] is None and hit["roles"] is None and hit["decision_id"] is None


def test_unreachable_gatehouse_fails_closed(app, envoy_unreachable):
    """ext_authz cannot reach its cluster: status_on_error 503, nothing reaches the app."""
    mark = app.mark()
    for method, path in [("GET", "/health"), ("GET", "/documents/1"), ("POST", "/documents")]:
        r = httpx.request(method, envoy_unreachable.url + path, headers=PRINCIPAL, json={})
        assert r.status_code == 503, (method, path)
    # A body over max_request_bytes is refused before ext_authz is even asked.
    r = httpx.post(envoy_unreachable.url + "/documents", headers=PRINCIPAL,
                   content=b"x" * (1 << 20))
    assert r.status_code == 413
    assert app.since(mark) == []
