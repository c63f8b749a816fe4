"""Envoy -> Gatehouse -> app with the bundled gatehouse.yaml and the demo policies.

Principals (examples/fastapi/mint_token.py): alice (user, engineering), bob (manager,
engineering, limit 10000, confidential clearance), carol (user, sales), root (admin),
bot = svc-reporting (principal policy: read-only). Seed documents (examples/fastapi/app.py):
1 alice draft, 2 alice in_review 5000, 3 alice archived, 4 carol sales in_review,
5 alice confidential in_review 50000.

Gatehouse caches fetched attributes for 2 s (cacheTtlMs), so tests that change a
document's state work on documents they create, and never re-check a document whose
attributes they just changed.
"""

from __future__ import annotations

import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import mint_token
import stack
from helpers import (DECISION_ID, Client, b64url, assert_allowed, assert_denied, assert_unauthenticated,
                     create, hs256_token, now, unsigned_token)

# === Owners, non-owners, managers, admins ================================================


def test_health_is_public(client, app):
    mark = app.mark()
    r = client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert [h["path"] for h in app.since(mark)] == ["/health"]


def test_owner_reads_own_draft(client, app):
    mark = app.mark()
    r = client.get("/documents/1", as_="alice")
    body = assert_allowed(r, app, mark, "alice", ["user"])
    assert body["id"] == "1" and body["owner"] == "alice"
    assert "owner" in body["seen_by"]["derived_roles"], body["seen_by"]


def test_decision_ids_are_unique(client, app):
    ids = set()
    for _ in range(3):
        r = client.get("/documents/1", as_="alice")
        assert r.status_code == 200
        ids.add(r.json()["seen_by"]["decision_id"])
    assert len(ids) == 3


def test_owner_updates_own_draft(client, app):
    doc = create(client, "alice", title="draft")
    mark = app.mark()
    r = client.request("PUT", f"/documents/{doc}", as_="alice",
                       json={"title": "v2", "classification": "internal", "status": "draft",
                             "amount": 0})
    assert assert_allowed(r, app, mark, "alice", ["user"])["title"] == "v2"
    mark = app.mark()
    r = client.request("PATCH", f"/documents/{doc}", as_="alice", json={"title": "v3"})
    assert assert_allowed(r, app, mark, "alice", ["user"])["title"] == "v3"


def test_attributes_are_fetched_for_the_requested_id(client, app):
    doc = create(client, "alice")
    mark = app.mark()
    assert client.get(f"/documents/{doc}", as_="alice").status_code == 200
    fetches = [h["path"] for h in app.since(mark, via_envoy=False)]
    assert fetches == [f"/internal/documents/{doc}/attributes"]


def test_non_owner_cannot_read_or_update(client, app):
    mark = app.mark()
    body = assert_denied(client.get("/documents/1", as_="carol"), app, mark)
    assert isinstance(body["detail"], str) and body["detail"]
    mark = app.mark()
    r = client.request("PUT", "/documents/1", as_="carol",
                       json={"title": "pwned", "classification": "public", "status": "draft",
                             "amount": 0})
    assert_denied(r, app, mark)
    mark = app.mark()
    assert_denied(client.request("PATCH", "/documents/1", as_="carol", json={"title": "x"}),
                  app, mark)
    mark = app.mark()
    assert_denied(client.request("DELETE", "/documents/1", as_="carol"), app, mark)
    assert client.get("/documents/1", as_="alice").json()["title"] == "Design notes"


def test_other_department_cannot_read(client, app):
    mark = app.mark()
    assert_denied(client.get("/documents/4", as_="alice"), app, mark)


def test_confidential_needs_clearance(client, app):
    mark = app.mark()
    assert_allowed(client.get("/documents/5", as_="bob"), app, mark, "bob", ["manager"])
    mark = app.mark()
    assert_denied(client.get("/documents/5", as_="carol"), app, mark)


def test_archived_is_frozen_for_its_owner(client, app):
    mark = app.mark()
    assert_allowed(client.get("/documents/3", as_="alice"), app, mark, "alice", ["user"])
    mark = app.mark()
    assert_denied(client.request("PATCH", "/documents/3", as_="alice", json={"title": "x"}),
                  app, mark)


def test_owner_deletes_only_drafts(client, app):
    draft = create(client, "alice", status="draft")
    review = create(client, "alice", status="in_review", amount=10)
    mark = app.mark()
    assert_denied(client.request("DELETE", f"/documents/{review}", as_="alice"), app, mark)
    mark = app.mark()
    r = client.request("DELETE", f"/documents/{draft}", as_="alice")
    assert assert_allowed(r, app, mark, "alice", ["user"])["deleted"] == draft


def test_manager_approves_in_review_document_of_his_department(client, app):
    doc = create(client, "alice", status="in_review", amount=5000)
    mark = app.mark()
    r = client.post(f"/documents/{doc}/approve", as_="bob")
    body = assert_allowed(r, app, mark, "bob", ["manager"])
    assert body["status"] == "approved" and body["approved_by"] == "bob"


def test_manager_cannot_approve_other_department(client, app):
    doc = create(client, "carol", department="sales", status="in_review", amount=100)
    mark = app.mark()
    assert_denied(client.post(f"/documents/{doc}/approve", as_="bob"), app, mark)
    mark = app.mark()
    assert_denied(client.post("/documents/4/approve", as_="bob"), app, mark)  # seed, sales
    assert app.attributes("4")["status"] == "in_review"


def test_manager_approval_limits(client, app):
    over = create(client, "alice", status="in_review", amount=10001)
    mark = app.mark()
    assert_denied(client.post(f"/documents/{over}/approve", as_="bob"), app, mark)
    mark = app.mark()
    assert_denied(client.post("/documents/3/approve", as_="bob"), app, mark)  # archived
    own = create(client, "bob", status="in_review", amount=10)
    mark = app.mark()
    assert_denied(client.post(f"/documents/{own}/approve", as_="bob"), app, mark)  # own
    mark = app.mark()
    assert_denied(client.post("/documents/2/approve", as_="alice"), app, mark)  # not a manager


def test_admin_can_do_anything(client, app):
    mark = app.mark()
    r = client.get("/documents", as_="root")
    body = assert_allowed(r, app, mark, "root", ["admin"])
    assert {"1", "2", "3", "4", "5"} <= {d["id"] for d in body["documents"]}
    for owner, fields in [("carol", {"department": "sales"}),
                          ("alice", {"status": "in_review", "amount": 99999}),
                          ("bob", {"classification": "confidential"})]:
        doc = create(client, owner, **fields)
        mark = app.mark()
        r = client.request("DELETE", f"/documents/{doc}", as_="root")
        assert assert_allowed(r, app, mark, "root", ["admin"])["deleted"] == doc
    mark = app.mark()
    r = client.request("PATCH", "/documents/3", as_="root", json={"body": "admin note"})
    assert_allowed(r, app, mark, "root", ["admin"])


def test_list_is_filtered_with_one_check_resources_call(client, app):
    """Users may `list`; the app asks Gatehouse's Cerbos API (official SDK, one
    CheckResources call) which documents the caller may read, and returns only those."""
    seed = {"1", "2", "3", "4", "5"}
    mark = app.mark()
    body = assert_allowed(client.get("/documents", as_="carol"), app, mark, "carol", ["user"])
    carol = {d["id"] for d in body["documents"]} & seed
    assert carol == {"4"}, carol  # sales: only the sales document
    mark = app.mark()
    assert_denied(client.get("/documents/5", as_="carol"), app, mark)
    alice = {d["id"] for d in client.get("/documents", as_="alice").json()["documents"]} & seed
    assert alice == {"1", "2", "3", "5"}, alice  # her own, the confidential one included
    bob = {d["id"] for d in client.get("/documents", as_="bob").json()["documents"]} & seed
    assert bob == {"1", "2", "3", "5"}, bob  # his department; cleared for confidential
    # Every listed document is one the caller can also read one by one.
    for doc in carol | alice:
        who = "carol" if doc in carol else "alice"
        assert client.get(f"/documents/{doc}", as_=who).status_code == 200


def _access_log_has(envoy: stack.Envoy, *wanted: str) -> str:
    """Envoy's log once it has every `wanted` text (or after 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        log = envoy.proc.log_path.read_text()
        if all(w in log for w in wanted) or time.monotonic() > deadline:
            return log
        time.sleep(0.1)


def test_decision_id_in_envoy_access_log(client, app, envoy_authz, mode):
    """The access log names every decision: an allowed request's from the header Gatehouse
    set for the app, a denial's from Gatehouse's dynamic metadata (gRPC, envoyMetadata's
    default `deny`: allowed requests carry none) or its response header (HTTP mode)."""
    r = client.get("/documents/2", as_="carol")
    assert r.status_code == 403
    denied_id = r.headers[DECISION_ID]
    allowed_id = client.get("/documents/2", as_="alice").json()["seen_by"]["decision_id"]
    denial = "denial" if mode == "grpc" else "decision"
    log = _access_log_has(envoy_authz, f"{denial}={denied_id}", f"decision={allowed_id}")
    assert f'"GET /documents/2" 403 UAEX' in log and f"{denial}={denied_id}" in log
    assert f"decision={allowed_id}" in log
    if mode == "grpc":
        (line,) = [x for x in log.splitlines() if f"decision={allowed_id}" in x]
        assert line.endswith("denial=-"), line


def test_access_log_shows_gatehouses_decision_not_a_forged_one(envoy_noearly, tokens, mode):
    """Without Envoy's own stripping, a client-sent x-gatehouse-decision-id is overwritten by
    Gatehouse before the access log reads the header."""
    c = Client(envoy_noearly, tokens)
    try:
        r = c.get("/documents/2", as_="alice", headers={DECISION_ID: "forged-id"})
        allowed_id = r.json()["seen_by"]["decision_id"]
    finally:
        c.close()
    assert allowed_id != "forged-id"
    log = _access_log_has(envoy_noearly, f"decision={allowed_id}")
    assert f"decision={allowed_id}" in log
    assert "forged-id" not in log


def test_create_sets_owner_to_caller(client, app):
    mark = app.mark()
    r = client.post("/documents", as_="carol", json={"title": "t", "department": "sales"})
    body = assert_allowed(r, app, mark, "carol", ["user"], status=201)
    assert body["owner"] == "carol"


def test_principal_policy_service_account(client, app):
    mark = app.mark()
    assert_allowed(client.get("/documents/2", as_="bot"), app, mark, "svc-reporting", ["user"])
    mark = app.mark()
    assert_denied(client.get("/documents/5", as_="bot"), app, mark)  # confidential
    mark = app.mark()
    assert_denied(client.post("/documents", as_="bot", json={"title": "t", "department": "x"}),
                  app, mark)
    mark = app.mark()
    assert_denied(client.request("DELETE", "/documents/2", as_="bot"), app, mark)


def test_unknown_document_is_never_allowed_through_as_200(client, app):
    r = client.get("/documents/999", as_="root")
    assert r.status_code in (403, 404), r.text


# === Authentication ======================================================================


def test_anonymous_gets_401_with_challenge(client, app):
    for method, path in [("GET", "/documents"), ("GET", "/documents/1"),
                         ("POST", "/documents/2/approve")]:
        mark = app.mark()
        r = client.request(method, path)
        assert_unauthenticated(r, app, mark)
        assert "detail" in r.json()


def _other_key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _dev_public_pem() -> bytes:
    (jwk,) = json.loads(stack.JWKS.read_text())["keys"]
    return jwt.PyJWK(jwk).key.public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)


def bad_tokens() -> dict[str, str]:
    alice = mint_token.PRESETS["alice"]
    claims = mint_token.claims_for(**alice)
    return {
        "expired": mint_token.sign(mint_token.claims_for(**alice, now=now() - 7200)),
        "other-key-same-kid": mint_token.sign(claims, key_pem=_other_key_pem()),
        "alg-none": unsigned_token(claims),
        "alg-none-with-root": unsigned_token(mint_token.claims_for(**mint_token.PRESETS["root"])),
        "hs256-with-public-key": hs256_token(claims, _dev_public_pem()),
        "wrong-issuer": mint_token.sign({**claims, "iss": "https://evil.example.test"}),
        "wrong-audience": mint_token.sign({**claims, "aud": "other-api"}),
        "tampered-payload": _tampered(mint_token.sign(claims)),
        "garbage": "not-a-jwt",
    }


def _tampered(token: str) -> str:
    header, _, sig = token.split(".")
    root = mint_token.claims_for(**mint_token.PRESETS["root"])
    return f"{header}.{b64url(json.dumps(root).encode())}.{sig}"


BAD = bad_tokens()


@pytest.mark.parametrize("name", sorted(BAD))
def test_invalid_tokens_get_401(client, app, name):
    mark = app.mark()
    assert_unauthenticated(client.get("/documents/1", token=BAD[name]), app, mark)


def test_non_bearer_authorization_gets_401(client, app):
    mark = app.mark()
    r = client.get("/documents/1", headers={"authorization": "Basic YWxpY2U6cGFzcw=="})
    assert_unauthenticated(r, app, mark)


# === Client-sent identity headers ========================================================

SPOOF = {
    "x-gatehouse-principal": "root",
    "x-gatehouse-roles": "admin",
    "x-gatehouse-derived-roles": "owner",
    "x-gatehouse-outputs": '{"spoofed": true}',
    "x-gatehouse-decision-id": "forged",
    "X-Gatehouse-Principal": "root",  # case variants are one header in HTTP
}


@pytest.fixture(params=["envoy_authz", "envoy_noearly"])
def spoof_client(request, tokens, mode):
    """The shipped config, and one without Envoy's own stripping (Gatehouse's alone), in
    each ext_authz mode."""
    c = Client(request.getfixturevalue(request.param), tokens)
    yield c
    c.close()


def test_spoofed_identity_headers_do_not_reach_the_app(spoof_client, app):
    mark = app.mark()
    r = spoof_client.get("/documents/1", as_="alice", headers=SPOOF)
    body = assert_allowed(r, app, mark, "alice", ["user"])
    seen = body["seen_by"]
    assert seen["decision_id"] != "forged"
    assert seen["outputs"] != {"spoofed": True}
    (hit,) = app.since(mark)
    assert hit["roles"] == "user" and hit["outputs"] != SPOOF["x-gatehouse-outputs"]
    assert "admin" not in (hit["derived_roles"] or "")

    # The spoofed principal buys nothing: alice still may not read carol's document ...
    mark = app.mark()
    assert_denied(spoof_client.get("/documents/4", as_="alice", headers=SPOOF), app, mark)
    # ... and without a token the headers are no identity at all.
    mark = app.mark()
    assert_unauthenticated(spoof_client.get("/documents/1", headers=SPOOF), app, mark)


def test_header_with_underscores_is_rejected(client, app):
    mark = app.mark()
    r = client.raw("GET", "/documents/1", as_="alice", headers={"x_gatehouse_principal": "root"})
    assert r.status == 400
    assert app.since(mark) == []


# === Routes ==============================================================================


@pytest.mark.parametrize("method,path", [
    ("GET", "/documents/1/secrets"),
    ("GET", "/documents/2/approve"),       # approve is POST only
    ("DELETE", "/documents"),              # the collection has GET and POST only
    ("GET", "/documents/1/attributes"),
])
@pytest.mark.parametrize("who", ["alice", "root"])
def test_unmatched_route_is_denied(client, app, method, path, who):
    mark = app.mark()
    assert_denied(client.request(method, path, as_=who), app, mark)


# === Attribute source down ===============================================================


def test_attribute_source_failure_denies(client, app):
    """The app's attribute endpoint answers 503: no decision without attributes."""
    doc = create(client, "alice")  # never fetched, so not in Gatehouse's cache
    app.set_attributes_down(True)
    try:
        mark = app.mark()
        r = client.get(f"/documents/{doc}", as_="alice")
        assert r.status_code == 403, r.text
        assert app.since(mark) == []
        assert [h["path"] for h in app.since(mark, via_envoy=False)] == \
            [f"/internal/documents/{doc}/attributes"]
    finally:
        app.set_attributes_down(False)
    assert client.get(f"/documents/{doc}", as_="alice").status_code == 200


@pytest.fixture(scope="module")
def nofetch_client(envoy_nofetch, tokens):
    c = Client(envoy_nofetch, tokens)
    yield c
    c.close()


def test_attribute_source_unreachable_denies(nofetch_client, app):
    """gatehouse_nofetch fetches attributes from a closed port."""
    c = nofetch_client
    # Routes without a fetch still work (so a 403 below is not a broken stack) ...
    mark = app.mark()
    assert_allowed(c.get("/documents", as_="root"), app, mark, "root", ["admin"])
    mark = app.mark()
    r = c.post("/documents", as_="alice", json={"title": "t", "department": "engineering"})
    assert_allowed(r, app, mark, "alice", ["user"], status=201)
    # ... while every route that needs attributes is denied, for owners and admins alike.
    for who, method, path in [("alice", "GET", "/documents/1"),
                              ("alice", "PATCH", "/documents/1"),
                              ("root", "GET", "/documents/1"),
                              ("root", "DELETE", "/documents/4"),
                              ("bob", "POST", "/documents/2/approve")]:
        mark = app.mark()
        r = c.request(method, path, as_=who, json={} if method == "PATCH" else None)
        assert r.status_code == 403, (who, method, path, r.status_code, r.text)
        assert r.headers.get(DECISION_ID)
        assert app.since(mark) == []


# === Large bodies ========================================================================


def test_body_within_limit_is_checked_and_forwarded(client, app):
    mark = app.mark()
    r = client.post("/documents", as_="alice",
                    json={"title": "big", "department": "engineering", "body": "x" * 60_000})
    body = assert_allowed(r, app, mark, "alice", ["user"], status=201)
    assert len(body["body"]) == 60_000


def test_large_body_is_refused_and_gatehouse_keeps_serving(client, app, gatehouse):
    mark = app.mark()
    r = client.post("/documents", as_="alice",
                    json={"title": "huge", "department": "engineering", "body": "x" * (1 << 20)})
    assert r.status_code in (413, 403), r.status_code
    assert app.since(mark) == []
    mark = app.mark()
    r = client.post("/documents", as_="alice", content=b"\xff" * (1 << 20),
                    headers={"content-type": "application/octet-stream"})
    assert r.status_code in (413, 403), r.status_code
    assert app.since(mark) == []
    assert gatehouse.proc.alive()
    assert httpx.get(gatehouse.health_url, timeout=5).status_code == 200
    mark = app.mark()
    assert_allowed(client.get("/documents/1", as_="alice"), app, mark, "alice", ["user"])


def test_malformed_body_is_not_a_crash(client, app, gatehouse):
    for content in [b"{", b"[]", b'{"department": 5}', b"\x00\x01\x02", b""]:
        r = client.post("/documents", as_="alice", content=content,
                        headers={"content-type": "application/json"})
        # Gatehouse may refuse (400/403) or let the app reject the body (422); never 5xx.
        assert r.status_code in (400, 403, 422), (content, r.status_code, r.text)
    assert gatehouse.proc.alive()


# === Identity headers carry any name losslessly (issue 12, items 5 and 12) ==============


def test_issue_12_role_with_comma_stays_one_role_and_accents_survive(client, app):
    # A token whose role contains a comma must not become two roles (one of them admin)
    # downstream, and accented names must arrive intact (not read back as latin-1).
    claims = mint_token.claims_for(sub="zoë", roles=["user", "admin,viewer"], department="façade")
    token = mint_token.sign(claims)
    mark = app.mark()
    r = client.post("/documents", token=token, json={"title": "t", "department": "façade"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["owner"] == "zoë"
    assert created["seen_by"]["principal"] == "zoë"
    assert created["seen_by"]["roles"] == ["user", "admin,viewer"]
    [seen] = app.since(mark)
    assert seen["principal"] == "zo%C3%AB"
    assert seen["roles"] == "user,admin%2Cviewer"

    r = client.get("/documents", token=token)
    assert r.status_code == 200, r.text
    ids = {d["id"] for d in r.json()["documents"]}
    # Same department ("façade" from the principal-attr header) and owner: visible.
    assert created["id"] in ids
    # Carol's sales document is visible to admins only.
    assert "4" not in ids
