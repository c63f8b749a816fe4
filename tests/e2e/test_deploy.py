"""deploy/kubernetes/, deploy/istio/ and the Dockerfile, checked offline: every Kubernetes
object against the Kubernetes OpenAPI schemas of a pinned version (PyPI kubernetes-validate,
strict: unknown fields are errors), the Istio objects against the OpenAPI schemas of Istio's
own CRDs (vendored in tests/deploy/istio-crds/ with Istio's licence), the configuration in
the ConfigMap through `gatehouse routes`, the sidecar's Envoy configuration through
`envoy --mode validate`, and the hardening every workload must have."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

import stack

K8S_VERSION = "1.34.0"  # the Kubernetes version the manifests are validated against
DEPLOY = stack.REPO / "deploy"
CRDS = stack.REPO / "tests" / "deploy" / "istio-crds"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _k8s_docs() -> list[tuple[str, dict]]:
    return [(f"{p.name}:{d['kind']}/{d['metadata']['name']}", d)
            for p in sorted((DEPLOY / "kubernetes").glob("*.yaml")) for d in _docs(p)]


def _workloads() -> list[tuple[str, dict]]:
    return [(n, d) for n, d in _k8s_docs() if d["kind"] == "Deployment"]


@pytest.mark.parametrize("name,doc", _k8s_docs(), ids=[n for n, _ in _k8s_docs()])
def test_kubernetes_manifests_validate(name, doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kubernetes_validation_catches_mistakes():
    """The validator is not a no-op: a misspelt field and a wrong type are refused."""
    (_, deployment), *_ = _workloads()
    bad = json.loads(json.dumps(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    bad = json.loads(json.dumps(deployment))
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def _istio_schema(kind: str) -> dict:
    return json.loads((CRDS / f"{kind}.v1.json").read_text())


ISTIO_DOCS = [(f"{p.name}:{d['kind']}/{d['metadata']['name']}", d)
              for p in sorted((DEPLOY / "istio").glob("*.yaml")) for d in _docs(p)
              if d["apiVersion"].startswith("security.istio.io/")]


@pytest.mark.parametrize("name,doc", ISTIO_DOCS, ids=[n for n, _ in ISTIO_DOCS])
def test_istio_manifests_validate_against_istio_crds(name, doc):
    assert doc["apiVersion"] == "security.istio.io/v1"
    jsonschema.validate(doc, _istio_schema(doc["kind"]))


def test_istio_crd_schemas_catch_mistakes():
    (_, policy), *_ = [(n, d) for n, d in ISTIO_DOCS if d["kind"] == "AuthorizationPolicy"]
    bad = json.loads(json.dumps(policy))
    bad["spec"]["action"] = "ALLOW_ALL"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _istio_schema("AuthorizationPolicy"))
    assert {d["kind"] for _, d in ISTIO_DOCS} == {"AuthorizationPolicy", "RequestAuthentication"}


def test_istio_provider_and_policies():
    mesh = yaml.safe_load((DEPLOY / "istio/mesh-config.yaml").read_text())
    (provider,) = mesh["spec"]["meshConfig"]["extensionProviders"]
    grpc = provider["envoyExtAuthzGrpc"]
    assert grpc["failOpen"] is False and grpc["timeout"] == "0.5s"
    # The provider points at the standalone Service and its gRPC port.
    service = next(d for _, d in _k8s_docs() if d["kind"] == "Service" and d["metadata"]["name"] == "gatehouse")
    assert grpc["service"] == f"gatehouse.{service['metadata']['namespace']}.svc.cluster.local"
    assert grpc["port"] in [p["port"] for p in service["spec"]["ports"]]
    custom = next(d for _, d in ISTIO_DOCS if d["spec"].get("action") == "CUSTOM")
    not_paths = custom["spec"]["rules"][0]["to"][0]["operation"]["notPaths"]
    assert {"/health", "/docs", "/openapi.json"} <= set(not_paths)
    (jwt_rule,) = next(d for _, d in ISTIO_DOCS if d["kind"] == "RequestAuthentication")["spec"]["jwtRules"]
    assert jwt_rule["forwardOriginalToken"] is True


@pytest.mark.parametrize("name,doc", _workloads(), ids=[n for n, _ in _workloads()])
def test_workloads_are_hardened(name, doc):
    pod = doc["spec"]["template"]
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
    (gatehouse,) = [c for c in spec["containers"] if c["name"] == "gatehouse"]
    # Probes: the gRPC health service and the HTTP health endpoint.
    assert gatehouse["readinessProbe"]["grpc"]["port"] == 3593
    assert gatehouse["livenessProbe"]["httpGet"]["path"] == "/health"
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
    ports = {p["containerPort"] for p in gatehouse["ports"]}
    assert int(ann["prometheus.io/port"]) in ports
    # /metrics is served on the admin listener only: the scrape port is the admin port of
    # the configuration this container runs, and only the monitoring namespace reaches it.
    config_key = Path(gatehouse["args"][gatehouse["args"].index("--config") + 1]).name
    cfg = yaml.safe_load(_config_map("gatehouse-config")["data"][config_key])
    admin_port = int(cfg["server"]["adminListenAddr"].rsplit(":", 1)[1])
    assert int(ann["prometheus.io/port"]) == admin_port, name
    pod_labels = pod["metadata"]["labels"]
    (netpol,) = [d for _, d in _k8s_docs() if d["kind"] == "NetworkPolicy"
                 and d["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()]
    monitoring = [r for r in netpol["spec"]["ingress"]
                  if any(f.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "monitoring"
                         for f in r.get("from", []))]
    assert [p["port"] for r in monitoring for p in r["ports"]] == [admin_port], name
    # Policies and configuration from ConfigMaps, mounted read-only.
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in gatehouse["volumeMounts"]}
    policies = mounts["/etc/gatehouse/policies"]
    assert policies["readOnly"] and volumes[policies["name"]]["configMap"]["name"] == "gatehouse-policies"
    # Each Deployment has a PodDisruptionBudget and a NetworkPolicy selecting its pods.
    labels = doc["spec"]["selector"]["matchLabels"]
    kinds = {d["kind"] for _, d in _k8s_docs()
             if d["kind"] in ("PodDisruptionBudget", "NetworkPolicy")
             and (d["spec"].get("selector") or d["spec"].get("podSelector"))["matchLabels"] == labels}
    assert kinds == {"PodDisruptionBudget", "NetworkPolicy"}, name


def _config_map(name: str) -> dict:
    return next(d for _, d in _k8s_docs() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)


@pytest.mark.parametrize("key", ["gatehouse.yaml", "gatehouse-sidecar.yaml"])
def test_configmap_configuration_loads(key, tmp_path):
    """The configuration in the ConfigMap loads (`gatehouse routes` exits 2 when it does not),
    with the policy directory where the Deployments mount it."""
    text = _config_map("gatehouse-config")["data"][key]
    # A ConfigMap is flat: the policies as `kubectl create configmap gatehouse-policies
    # --from-file=...` (deploy/kubernetes/README.md) lays them out.
    flat = tmp_path / "policies"
    flat.mkdir()
    for sub in ("resource_policies", "derived_roles", "principal_policies"):
        for f in (stack.REPO / "policies" / sub).glob("*.yaml"):
            (flat / f.name).write_text(f.read_text())
    text = text.replace("/etc/gatehouse/policies", str(flat))
    (tmp_path / "gatehouse.yaml").write_text(text)
    r = subprocess.run([str(stack.gatehouse_binary()), "routes", "--config", str(tmp_path / "gatehouse.yaml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "/documents/{id}/approve" in r.stdout
    r = subprocess.run([str(stack.gatehouse_binary()), "compile", str(flat)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = yaml.safe_load(text)
    assert cfg["server"]["grpcListenAddr"] == "0.0.0.0:3593"


def test_configmap_configurations_differ_only_in_the_fetch_origin():
    data = _config_map("gatehouse-config")["data"]
    norm = lambda s: re.sub(r"http://[^/]+/internal/", "ORIGIN/internal/", s)  # noqa: E731
    strip = lambda s: "\n".join(l for l in norm(s).splitlines() if not l.strip().startswith("#"))  # noqa: E731
    assert strip(data["gatehouse.yaml"]) == strip(data["gatehouse-sidecar.yaml"])


def test_sidecar_envoy_config_validates(tmp_path):
    text = _config_map("documents-api-envoy")["data"]["envoy.yaml"]
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    r = stack.validate_envoy(path)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = yaml.safe_load(text)
    (ext,) = [f for f in stack._hcm(cfg)["http_filters"] if f["name"] == "envoy.filters.http.ext_authz"]
    assert ext["typed_config"]["failure_mode_allow"] is False
    (gh,) = [c for c in cfg["static_resources"]["clusters"] if c["name"] == "gatehouse"]
    addr = gh["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert addr == {"address": "127.0.0.1", "port_value": 3593}  # Gatehouse over localhost


def test_dockerfile_is_multi_stage_small_and_non_root():
    text = (stack.REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, re.M)
    assert len(stages) >= 2
    base, name = stages[-1]  # the default target is the last stage
    assert base.startswith("gcr.io/distroless/") and base.endswith(":nonroot"), base
    final = text.split(f"AS {name}")[1]
    user = re.search(r"^USER (\d+)", final, re.M)
    assert user and int(user.group(1)) != 0
    # The binary the tests run: the crate's `gatehouse` bin, default features, --locked,
    # with the whole-program-LTO profile that Cargo.toml defines and the benchmarks time.
    assert "cargo build --profile release-lto --locked --bin gatehouse\n" in text
    assert "COPY --from=build /src/target/release-lto/gatehouse /usr/local/bin/gatehouse" in final
    cargo = (stack.REPO / "Cargo.toml").read_text()
    assert '[[bin]]\nname = "gatehouse"' in cargo
    lto = re.search(r"^\[profile\.release-lto\]\n((?:[^\[\n].*\n)+)", cargo, re.M)
    assert lto and 'lto = "fat"' in lto.group(1) and "codegen-units = 1" in lto.group(1)
    assert "CARGO_PROFILE_RELEASE_LTO_STRIP=symbols" in text
    assert "Size target" in text and "Size target" in (stack.REPO / "README.md").read_text()
