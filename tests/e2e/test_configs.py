"""The shipped configs: Envoy validates them, they agree with each other and with
gatehouse.yaml. Needs Envoy, not Gatehouse."""

from __future__ import annotations

import json

import pytest
import yaml

import stack


@pytest.mark.parametrize("path", [stack.ENVOY_YAML, stack.ENVOY_JWT_YAML, stack.ENVOY_HTTP_YAML],
                         ids=lambda p: p.name)
def test_envoy_validates_bundled_config(path):
    r = stack.validate_envoy(path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK" in r.stdout + r.stderr


def test_envoy_validates_generated_configs(work_dir):
    """The configs the suite runs (ports substituted, filters dropped) validate too."""
    variants = {
        "authz": (stack.ENVOY_YAML, {}),
        "jwt": (stack.ENVOY_JWT_YAML, {}),
        "plain": (stack.ENVOY_YAML, {"ext_authz": False}),
        "noearly": (stack.ENVOY_YAML, {"early_header_mutation": False}),
        "http": (stack.ENVOY_HTTP_YAML, {}),
        "http-noearly": (stack.ENVOY_HTTP_YAML, {"early_header_mutation": False}),
    }
    for name, (source, opts) in variants.items():
        cfg = stack.envoy_config(source, listen_port=18080, admin_port=19901, app_port=18000,
                                 gatehouse_port=13593, **opts)
        path = work_dir / f"validate-{name}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        r = stack.validate_envoy(path)
        assert r.returncode == 0, f"{name}: {r.stdout}{r.stderr}"


def _filters(cfg):
    return stack._hcm(cfg)["http_filters"]


def test_jwt_authn_config_is_envoy_yaml_plus_jwt_authn():
    plain = yaml.safe_load(stack.ENVOY_YAML.read_text())
    jwt = yaml.safe_load(stack.ENVOY_JWT_YAML.read_text())
    names = [f["name"] for f in _filters(jwt)]
    assert names == ["envoy.filters.http.jwt_authn", "envoy.filters.http.ext_authz",
                     "envoy.filters.http.router"]
    jwt_filter = _filters(jwt).pop(0)
    assert jwt == plain, "envoy-jwt-authn.yaml drifted from envoy.yaml beyond the jwt_authn filter"

    # Issuer and audience as in gatehouse.yaml; the JWKS is the dev one.
    gh = yaml.safe_load(stack.GATEHOUSE_YAML.read_text())
    (gh_jwt,) = [s["jwt"] for s in gh["extAuthz"]["principal"]["sources"] if "jwt" in s]
    (provider,) = jwt_filter["typed_config"]["providers"].values()
    assert provider["issuer"] == gh_jwt["issuer"]
    assert provider["audiences"] == gh_jwt["audiences"]
    assert provider["forward"] is False
    assert provider["payload_in_metadata"] == "jwt_payload"
    assert (stack.REPO / provider["local_jwks"]["filename"]).resolve() == stack.JWKS
    (gh_ns,) = [s["jwtAuthn"]["namespace"] for s in gh["extAuthz"]["principal"]["sources"]
                if "jwtAuthn" in s]
    ext = _filters(plain)[0]["typed_config"]
    assert gh_ns in ext["metadata_context_namespaces"]


def test_envoy_yaml_matches_gatehouse_yaml():
    cfg = yaml.safe_load(stack.ENVOY_YAML.read_text())
    gh = yaml.safe_load(stack.GATEHOUSE_YAML.read_text())
    ext = _filters(cfg)[0]
    assert ext["name"] == "envoy.filters.http.ext_authz"
    tc = ext["typed_config"]
    assert tc["failure_mode_allow"] is False
    assert tc["transport_api_version"] == "V3"
    assert tc["with_request_body"] == {"max_request_bytes": 65536, "allow_partial_message": False,
                                       "pack_as_bytes": False}
    clusters = {c["name"]: c for c in cfg["static_resources"]["clusters"]}
    ep = clusters["gatehouse"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    sa = ep["endpoint"]["address"]["socket_address"]
    assert f"{sa['address']}:{sa['port_value']}" == gh["server"]["grpcListenAddr"]
    ep = clusters["app"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    sa = ep["endpoint"]["address"]["socket_address"]
    for route in gh["extAuthz"]["routes"]:
        fetch = (route.get("attributes") or {}).get("fetch")
        if fetch:
            assert fetch["url"].startswith(f"http://{sa['address']}:{sa['port_value']}/internal/")
    hcm = stack._hcm(cfg)
    assert hcm["normalize_path"] is True and hcm["merge_slashes"] is True
    assert hcm["path_with_escaped_slashes_action"] == "REJECT_REQUEST"
    (vh,) = hcm["route_config"]["virtual_hosts"]
    routed = [r["match"] for r in vh["routes"] if "route" in r]
    assert routed == [{"path": "/health"}, {"path_separated_prefix": "/documents"}]


def test_generated_gatehouse_config_substitutes_ports_and_paths():
    cfg = stack.gatehouse_config(4001, 4002, "http://127.0.0.1:4003")
    assert cfg["server"] == {"grpcListenAddr": "127.0.0.1:4001", "httpListenAddr": "127.0.0.1:4002",
                             "adminListenAddr": "127.0.0.1:3594", "cerbosApi": "enabled"}
    assert cfg["policies"]["directory"] == str(stack.POLICIES)
    text = yaml.safe_dump(cfg)
    assert ":8000" not in text and "http://127.0.0.1:4003/internal/documents/{id}/attributes" in text
    assert str(stack.JWKS) in text


def test_dev_keys_are_a_pair_and_marked_dev_only():
    import jwt

    pem = (stack.APP_DIR / "dev-private-key.pem").read_text()
    assert "DEV ONLY" in pem.split("-----BEGIN")[0]
    jwks = json.loads(stack.JWKS.read_text())
    (key,) = jwks["keys"]
    assert key["kid"] == "dev-1" and key["alg"] == "RS256" and key["kty"] == "RSA"
    import mint_token

    token = mint_token.mint("alice")
    claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["RS256"],
                        audience="documents-api", issuer="https://auth.example.test")
    assert claims["sub"] == "alice" and claims["roles"] == ["user"]
    assert claims["exp"] - claims["iat"] == 3600
    assert jwt.get_unverified_header(token)["kid"] == "dev-1"


def test_istio_and_compose_files_parse():
    docs = list(yaml.safe_load_all((stack.REPO / "deploy/istio/authorization-policy.yaml").read_text()))
    assert [d["spec"]["action"] for d in docs] == ["CUSTOM", "DENY"]
    assert docs[0]["spec"]["provider"]["name"] == "gatehouse"
    mesh = yaml.safe_load((stack.REPO / "deploy/istio/mesh-config.yaml").read_text())
    (provider,) = mesh["spec"]["meshConfig"]["extensionProviders"]
    assert provider["name"] == "gatehouse"
    assert provider["envoyExtAuthzGrpc"]["port"] == 3593
    assert provider["envoyExtAuthzGrpc"]["failOpen"] is False
    compose = yaml.safe_load((stack.REPO / "docker-compose.yml").read_text())
    assert set(compose["services"]) == {"envoy", "gatehouse", "app"}
    assert compose["services"]["envoy"]["image"] == "envoyproxy/envoy:v1.40-latest"
