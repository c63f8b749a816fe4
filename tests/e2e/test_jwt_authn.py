"""envoy/envoy-jwt-authn.yaml: Envoy verifies the token (jwt_authn), removes it, and
Gatehouse takes the principal from the verified claims in the ext_authz metadata."""

from __future__ import annotations

import pytest

import mint_token
from helpers import Client, assert_allowed, assert_denied, assert_unauthenticated, create, now


@pytest.fixture(scope="module")
def jwt_client(envoy_jwt, tokens):
    c = Client(envoy_jwt, tokens)
    yield c
    c.close()


def test_health_needs_no_token(jwt_client, app):
    assert jwt_client.get("/health").status_code == 200


def test_owner_reads_own_draft_from_metadata(jwt_client, app):
    mark = app.mark()
    body = assert_allowed(jwt_client.get("/documents/1", as_="alice"), app, mark, "alice", ["user"])
    assert body["owner"] == "alice"
    (hit,) = app.since(mark)
    # forward: false -> the token never reached ext_authz nor the app, so the principal
    # came from the jwt_authn metadata.
    assert hit["authorization"] is False


def test_owner_updates_own_draft(jwt_client, app):
    doc = create(jwt_client, "alice")
    mark = app.mark()
    r = jwt_client.request("PATCH", f"/documents/{doc}", as_="alice", json={"title": "jwt"})
    assert assert_allowed(r, app, mark, "alice", ["user"])["title"] == "jwt"


def test_non_owner_denied(jwt_client, app):
    mark = app.mark()
    assert_denied(jwt_client.get("/documents/1", as_="carol"), app, mark)
    mark = app.mark()
    assert_denied(jwt_client.request("PATCH", "/documents/1", as_="carol", json={"title": "x"}),
                  app, mark)


def test_principal_attributes_come_from_metadata(jwt_client, app):
    """approve needs P.attr.department and P.attr.approval_limit from the claims."""
    doc = create(jwt_client, "alice", status="in_review", amount=500)
    mark = app.mark()
    r = jwt_client.post(f"/documents/{doc}/approve", as_="bob")
    assert assert_allowed(r, app, mark, "bob", ["manager"])["status"] == "approved"
    doc = create(jwt_client, "carol", department="sales", status="in_review", amount=500)
    mark = app.mark()
    assert_denied(jwt_client.post(f"/documents/{doc}/approve", as_="bob"), app, mark)


def test_missing_or_invalid_token_is_401_from_envoy(jwt_client, app):
    mark = app.mark()
    assert_unauthenticated(jwt_client.get("/documents/1"), app, mark)
    expired = mint_token.sign(mint_token.claims_for(**mint_token.PRESETS["alice"], now=now() - 7200))
    mark = app.mark()
    assert_unauthenticated(jwt_client.get("/documents/1", token=expired), app, mark)
