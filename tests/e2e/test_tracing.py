"""One trace across Envoy and Gatehouse: Envoy's OpenTelemetry tracer and Gatehouse both
export OTLP/HTTP to a collector run by this test, and Gatehouse's decision span hangs
under the span Envoy opened for its ext_authz call, in the client's trace."""

from __future__ import annotations

import copy
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import stack

TRACE = "5b8efff798038103d269b633813fc60c"
CLIENT_SPAN = "eee19b7ec3c1b174"


class Collector:
    """An OTLP/HTTP collector on 127.0.0.1: keeps every span with its service name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self._body()
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                with outer.lock:
                    for rs in req.resource_spans:
                        service = next(
                            (a.value.string_value for a in rs.resource.attributes if a.key == "service.name"),
                            "",
                        )
                        for ss in rs.scope_spans:
                            outer.spans.extend((service, s) for s in ss.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def _body(self) -> bytes:
                if "chunked" not in self.headers.get("transfer-encoding", "").lower():
                    return self.rfile.read(int(self.headers.get("content-length", "0")))
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def in_trace(self, trace_hex: str) -> list[tuple[str, Any]]:
        with self.lock:
            return [(svc, s) for svc, s in self.spans if s.trace_id.hex() == trace_hex]


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.server.shutdown()


def traced_envoy_config(gatehouse_port: int, app_port: int, collector_port: int) -> dict[str, Any]:
    """envoy/envoy.yaml plus Envoy's OpenTelemetry tracer exporting to the collector."""
    cfg = stack.envoy_config(
        stack.ENVOY_YAML, listen_port=stack.free_port(), admin_port=stack.free_port(),
        app_port=app_port, gatehouse_port=gatehouse_port,
    )
    cfg["static_resources"]["clusters"].append({
        "name": "otel_collector",
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "load_assignment": {
            "cluster_name": "otel_collector",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": collector_port}}}}]}],
        },
    })
    hcm = stack._hcm(cfg)
    hcm["tracing"] = {
        "random_sampling": {"value": 100},
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "service_name": "envoy-e2e",
                "http_service": {
                    "http_uri": {
                        "uri": f"http://127.0.0.1:{collector_port}/v1/traces",
                        "cluster": "otel_collector",
                        "timeout": "1s",
                    },
                },
            },
        },
    }
    # Envoy batches spans for 5 s by default; flush promptly.
    cfg["layered_runtime"] = {"layers": [{"name": "static", "static_layer": {
        "tracing.opentelemetry.flush_interval_ms": 100,
        "tracing.opentelemetry.min_flush_spans": 1,
    }}]}
    return copy.deepcopy(cfg)


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_gatehouse_span_continues_envoys_trace(app, work_dir, collector, tokens):
    gh = stack.start_gatehouse(
        "tracing", app.url, work_dir,
        extra={"tracing": {"otlp": {
            "endpoint": f"http://127.0.0.1:{collector.port}",
            "serviceName": "gatehouse-e2e",
            "exportIntervalMs": 100,
        }}},
    )
    env = None
    try:
        env = stack.start_envoy("tracing", traced_envoy_config(gh.grpc_port, app.port, collector.port), work_dir)
        r = httpx.get(
            f"{env.url}/documents/1",
            headers={
                "authorization": f"Bearer {tokens['alice']}",
                "traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01",
            },
            timeout=5,
        )
        assert r.status_code == 200, r.text
        decision_id = r.headers.get("x-gatehouse-decision-id") or ""

        def complete() -> bool:
            services = {svc for svc, _ in collector.in_trace(TRACE)}
            return {"envoy-e2e", "gatehouse-e2e"} <= services

        if not wait_for(complete):
            stats = httpx.get(f"http://127.0.0.1:{env.admin_port}/stats?filter=opentelemetry|tracing", timeout=5).text
            pytest.fail(f"envoy stats:\n{stats}\nspans: {collector.in_trace(TRACE)}")
        time.sleep(0.3)
        spans = collector.in_trace(TRACE)
        envoy_spans = {s.span_id.hex(): s for svc, s in spans if svc == "envoy-e2e"}
        ours = [s for svc, s in spans if svc == "gatehouse-e2e"]
        check = next(s for s in ours if s.name == "envoy.service.auth.v3.Authorization/Check")

        # Envoy's ingress span continues the client's trace...
        assert any(s.parent_span_id.hex() == CLIENT_SPAN for s in envoy_spans.values()), envoy_spans
        # ...and Gatehouse's decision span is a child of one of Envoy's spans (the one for
        # its ext_authz call), not of the client's span: the context came in the gRPC
        # metadata of Envoy's call.
        parent = envoy_spans.get(check.parent_span_id.hex())
        assert parent is not None, (check, envoy_spans)
        assert check.parent_span_id.hex() != CLIENT_SPAN
        assert "Authorization.Check" in parent.name, parent.name
        print(f"trace {TRACE}: gatehouse {check.name!r} under envoy {parent.name!r}")
        attrs = {a.key: a.value for a in check.attributes}
        assert attrs["gatehouse.allowed"].bool_value is True
        assert attrs["gatehouse.principal.id"].string_value == "alice"
        assert attrs["gatehouse.resource.kind"].string_value == "document"
        if decision_id:
            assert attrs["gatehouse.decision_id"].string_value == decision_id
        # The attribute fetch from the app is a child of the decision span.
        fetches = [s for s in ours if s.name == "attributes.fetch"]
        assert all(f.parent_span_id == check.span_id for f in fetches)
    finally:
        if env is not None:
            env.proc.stop()
        gh.proc.stop()
