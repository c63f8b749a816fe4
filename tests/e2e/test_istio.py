"""Gatehouse as Istio's CUSTOM ext_authz provider: real Envoy runs the filter chain istiod
generates for deploy/istio/ (tests/e2e/envoy-istio-custom.yaml: the shadow RBAC filter that
gates ext_authz through filter_enabled_metadata, the gRPC ext_authz filter with V3
transport, the provider's timeout, status on error and body settings, failure_mode_allow
false, then the DENY policy) in front of the FastAPI app."""

from __future__ import annotations

import httpx
import pytest
import yaml

import stack
from helpers import Client, assert_allowed, assert_denied, assert_unauthenticated, create


def _filters() -> dict[str, list[dict]]:
    cfg = yaml.safe_load(stack.ENVOY_ISTIO_YAML.read_text())
    hcm = stack._hcm(cfg)
    by_name: dict[str, list[dict]] = {}
    for f in hcm["http_filters"]:
        by_name.setdefault(f["name"], []).append(f["typed_config"])
    return by_name


def test_generated_filter_matches_deploy_istio():
    """The filter chain under test is the one deploy/istio/ makes istiod generate."""
    mesh = yaml.safe_load((stack.REPO / "deploy/istio/mesh-config.yaml").read_text())
    (provider,) = mesh["spec"]["meshConfig"]["extensionProviders"]
    grpc = provider["envoyExtAuthzGrpc"]
    filters = _filters()
    (ext,) = filters["envoy.filters.http.ext_authz"]
    assert ext["transport_api_version"] == "V3"
    assert ext["failure_mode_allow"] is grpc["failOpen"] is False
    assert ext["grpc_service"]["timeout"] == grpc["timeout"]
    assert str(ext["status_on_error"]["code"]) == grpc["statusOnError"]
    body = grpc["includeRequestBodyInCheck"]
    assert ext["with_request_body"] == {"max_request_bytes": body["maxRequestBytes"],
                                        "allow_partial_message": body["allowPartialMessage"],
                                        "pack_as_bytes": body["packAsBytes"]}
    cluster = ext["grpc_service"]["envoy_grpc"]["cluster_name"]
    assert cluster == f"outbound|{grpc['port']}||{grpc['service']}"
    gate = ext["filter_enabled_metadata"]
    assert gate["filter"] == "envoy.filters.http.rbac"
    assert gate["path"] == [{"key": "istio_ext_authz_shadow_effective_policy_id"}]
    assert gate["value"]["string_match"]["prefix"] == f"istio-ext-authz-{provider['name']}"

    policies = list(yaml.safe_load_all((stack.REPO / "deploy/istio/authorization-policy.yaml").read_text()))
    custom = next(p for p in policies if p["spec"]["action"] == "CUSTOM")
    assert custom["spec"]["provider"]["name"] == provider["name"]
    (rule,) = custom["spec"]["rules"]
    (to,) = rule["to"]
    shadow, _deny = filters["envoy.filters.http.rbac"]
    (name, policy), = shadow["shadow_rules"]["policies"].items()
    assert name == (f"istio-ext-authz-{provider['name']}-ns[{custom['metadata']['namespace']}]"
                    f"-policy[{custom['metadata']['name']}]-rule[0]")
    matchers = policy["permissions"][0]["and_rules"]["rules"][0]["not_rule"]["or_rules"]["rules"]
    # Istio's translation of notPaths: `/x/*` is a prefix, anything else exact.
    want = [{"url_path": {"path": ({"prefix": p[:-1]} if p.endswith("/*") else {"exact": p})}}
            for p in to["operation"]["notPaths"]]
    assert matchers == want


@pytest.fixture(scope="module")
def istio(envoy_istio, tokens):
    c = Client(envoy_istio, tokens)
    yield c
    c.close()


def test_istio_custom_provider_decides(istio, app):
    mark = app.mark()
    body = assert_allowed(istio.get("/documents/1", as_="alice"), app, mark, "alice", ["user"])
    assert "owner" in body["seen_by"]["derived_roles"]
    mark = app.mark()
    assert_denied(istio.post("/documents/2/approve", as_="alice"), app, mark)
    doc = create(istio, "alice", status="in_review", amount=100)
    r = istio.post(f"/documents/{doc}/approve", as_="bob")
    assert r.status_code == 200, r.text
    mark = app.mark()
    assert_unauthenticated(istio.get("/documents/1"), app, mark)


def test_istio_spoofed_identity_headers_do_not_reach_the_app(istio, app):
    mark = app.mark()
    r = istio.get("/documents/1", as_="alice",
                  headers={"x-gatehouse-principal": "root", "x-gatehouse-roles": "admin"})
    assert_allowed(r, app, mark, "alice", ["user"])


def test_istio_excluded_paths_skip_gatehouse_and_internal_is_denied(istio, app,
                                                                   envoy_istio_unreachable):
    mark = app.mark()
    assert istio.get("/health").json() == {"status": "ok"}
    assert istio.get("/openapi.json").status_code == 200
    (health, spec) = app.since(mark)
    assert health["decision_id"] is None and spec["decision_id"] is None  # Gatehouse not asked
    # The DENY policy: /internal/ only for Gatehouse's mTLS identity.
    mark = app.mark()
    r = istio.get("/internal/documents/1/attributes")
    assert r.status_code == 403 and "RBAC" in r.text
    assert app.since(mark) == []

    # Gatehouse unreachable: the gated paths fail closed with statusOnError (503), the
    # excluded ones never call it.
    down = httpx.Client(base_url=envoy_istio_unreachable.url, timeout=10)
    mark = app.mark()
    assert down.get("/health").status_code == 200
    r = down.get("/documents/1", headers={"authorization": f"Bearer {istio.tokens['alice']}"})
    assert r.status_code == 503, r.text
    assert [h["path"] for h in app.since(mark)] == ["/health"]
    down.close()
