"""nginx (auth_request) -> Gatehouse's forward-auth -> app: the identity, spoofing and
path scenarios of the Envoy suite, run as written against the nginx stack (the test
functions of test_authz.py and test_paths.py called with the nginx client), plus what
differs: nginx does not normalise the URI it forwards, so Gatehouse refuses ambiguous
spellings instead of seeing them resolved, and requests from untrusted addresses are
denied whatever they claim.

nginx sends no request body with its subrequest, so scenarios that create documents
(routes with `attributes.body`) stay with Envoy.
"""

from __future__ import annotations

import httpx
import pytest

import test_authz
import test_paths
from helpers import DECISION_ID, assert_allowed, assert_denied

IDENTITY = [
    test_authz.test_health_is_public,
    test_authz.test_owner_reads_own_draft,
    test_authz.test_decision_ids_are_unique,
    test_authz.test_non_owner_cannot_read_or_update,
    test_authz.test_other_department_cannot_read,
    test_authz.test_confidential_needs_clearance,
    test_authz.test_archived_is_frozen_for_its_owner,
    test_authz.test_principal_policy_service_account,
    test_authz.test_unknown_document_is_never_allowed_through_as_200,
    test_authz.test_anonymous_gets_401_with_challenge,
    test_authz.test_non_bearer_authorization_gets_401,
    test_authz.test_spoofed_identity_headers_do_not_reach_the_app,
    test_paths.test_internal_paths_never_reach_the_app_via_envoy,
]


@pytest.mark.parametrize("scenario", IDENTITY, ids=lambda f: f.__name__)
def test_identity_scenarios_through_nginx(scenario, nginx_client, app):
    scenario(nginx_client, app)


@pytest.mark.parametrize("name", sorted(test_authz.BAD))
def test_invalid_tokens_through_nginx(nginx_client, app, name):
    test_authz.test_invalid_tokens_get_401(nginx_client, app, name)


@pytest.mark.parametrize("method,path", [
    ("GET", "/documents/1/secrets"),
    ("GET", "/documents/2/approve"),
    ("DELETE", "/documents"),
    ("GET", "/documents/1/attributes"),
])
@pytest.mark.parametrize("who", ["alice", "root"])
def test_unmatched_routes_through_nginx(nginx_client, app, method, path, who):
    test_authz.test_unmatched_route_is_denied(nginx_client, app, method, path, who)


@pytest.mark.parametrize("path", test_paths.TRICKS)
def test_path_tricks_through_nginx(nginx_client, app, path):
    test_paths.test_path_trick_does_not_bypass(nginx_client, app, path)


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "TRACE", "CONNECT", "PROPFIND"])
def test_other_methods_through_nginx(nginx_client, app, method):
    test_paths.test_other_methods_do_not_bypass(nginx_client, app, method)


@pytest.mark.parametrize("path", test_paths.SAME_AS_DOC_1)
def test_other_spellings_of_a_path_through_nginx(nginx_client, app, path):
    """nginx forwards the URI as sent: Gatehouse either refuses a spelling it cannot read
    one way, or decides on the same path the app then serves, never another."""
    mark = app.mark()
    r = nginx_client.raw("GET", path, as_="alice")
    hits = app.since(mark)
    if r.status == 200:
        (hit,) = hits
        assert hit["path"] == "/documents/1" and hit["principal"] == "alice"
    else:
        assert r.status == 403 and hits == [], (path, r.status, hits)
    mark = app.mark()
    r = nginx_client.raw("GET", path, as_="carol")
    assert r.status == 403, (path, r.status)
    assert app.since(mark) == []


def test_denials_carry_the_decision_id_and_json(nginx_client, app):
    mark = app.mark()
    r = nginx_client.get("/documents/4", as_="alice")
    body = assert_denied(r, app, mark)
    assert body["decision_id"] == r.headers[DECISION_ID]


def test_header_with_underscores_is_dropped_by_nginx(nginx_client, app):
    """nginx drops headers with underscores (Envoy refuses the request): either way the
    header is no identity."""
    mark = app.mark()
    r = nginx_client.get("/documents/1", as_="alice", headers={"x_gatehouse_principal": "root"})
    assert_allowed(r, app, mark, "alice", ["user"])


def test_forward_auth_from_untrusted_address_is_denied(app, work_dir, tokens):
    """Only the configured proxies are believed: the same subrequest nginx sends is
    denied when it comes from an address outside trustedProxies."""
    import stack

    headers = {"authorization": f"Bearer {tokens['alice']}", "x-original-uri": "/documents/1",
               "x-original-method": "GET"}
    gh = stack.start_gatehouse("untrusted-proxy", app.url, work_dir,
                               ext_authz={"forwardAuth": {"trustedProxies": ["192.0.2.0/24"]}})
    try:
        r = httpx.get(f"http://127.0.0.1:{gh.http_port}/_gatehouse/forward-auth",
                      headers=headers, timeout=5)
        assert r.status_code == 403, r.text
        assert r.json()["decision_id"] == r.headers[DECISION_ID]
        assert "x-gatehouse-principal" not in r.headers
    finally:
        gh.proc.stop()


def test_forward_auth_answers_with_backend_headers(gatehouse, tokens):
    """Traefik/Caddy style (X-Forwarded-*), straight from a trusted address: 200 with the
    headers the proxy copies to the backend; a missing original URI is a denial."""
    url = f"http://127.0.0.1:{gatehouse.http_port}/_gatehouse/forward-auth"
    auth = {"authorization": f"Bearer {tokens['alice']}"}
    r = httpx.get(url, headers={**auth, "x-forwarded-method": "GET",
                                "x-forwarded-uri": "/documents/1", "x-forwarded-host": "api"},
                  timeout=5)
    assert r.status_code == 200, r.text
    assert r.headers["x-gatehouse-principal"] == "alice"
    assert r.headers["x-gatehouse-roles"] == "user"
    assert r.headers[DECISION_ID]
    r = httpx.get(url, headers={**auth, "x-forwarded-method": "DELETE",
                                "x-forwarded-uri": "/documents/4"}, timeout=5)
    assert r.status_code == 403 and "x-gatehouse-principal" not in r.headers
    r = httpx.get(url, headers={**auth, "x-forwarded-method": "GET"}, timeout=5)
    assert r.status_code == 403, r.text  # denyStatus 403 in the suite's config
    # A client-sent X-Original-URI next to the proxy's X-Forwarded-Uri: refused, not used.
    r = httpx.get(url, headers={**auth, "x-forwarded-method": "GET", "x-forwarded-uri": "/documents/4",
                                "x-original-uri": "/documents/1"}, timeout=5)
    assert r.status_code == 403, r.text
