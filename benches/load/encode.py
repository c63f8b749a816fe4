"""Writes the gRPC request bodies (5-byte gRPC frame + protobuf) that benches/load.sh sends
with h2load:

- check_resources.bin: the CheckResourcesRequest in ../shared/bench/check_resources.json,
  encoded with the official Cerbos SDK's generated messages;
- plan_resources.bin: the PlanResourcesRequest in benches/load/plan_resources.json (the
  same policies; a principal whose `read` plan is conditional);
- ext_authz_check.bin: an Envoy CheckRequest for `GET /documents/<id>` of the same
  resource, with a bearer token and the resource attributes as `x-doc-*` headers, encoded
  by hand (envoy.service.auth.v3; field numbers below);
- ext_authz_check_envoy.bin: the same request as Envoy 1.40 sends it (the peer addresses,
  the request time, every header Envoy passes on, the empty metadata contexts), as
  `envoy_check_request` in benches/extauthz.rs has it.

Usage: encode.py <check_resources.json> <bearer token> <out dir> [<plan_resources.json>]
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from cerbos.request.v1 import request_pb2
from google.protobuf import json_format


def grpc_frame(payload: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def envoy_check_request(method: str, path: str, headers: dict[str, str]) -> bytes:
    # HttpRequest: id=1, method=2, headers=3 (map<string,string>), path=4, host=5, scheme=6, protocol=10
    http = field(1, b"bench-1") + field(2, method.encode())
    for k, v in headers.items():
        http += field(3, field(1, k.encode()) + field(2, v.encode()))
    http += field(4, path.encode()) + field(5, b"documents.local") + field(6, b"http")
    http += field(10, b"HTTP/1.1")
    request = field(2, http)  # AttributeContext.Request.http = 2
    attributes = field(4, request)  # AttributeContext.request = 4
    return field(1, attributes)  # CheckRequest.attributes = 1


def varint_field(number: int, value: int) -> bytes:
    """A varint field (wire type 0)."""
    return varint(number << 3) + varint(value)


def envoy_shaped_check_request(path: str, token: str, attrs: dict[str, str]) -> bytes:
    def peer(port: int) -> bytes:
        # Peer.address=1 -> Address.socket_address=1 -> SocketAddress address=2, port_value=3
        socket = field(2, b"127.0.0.1") + varint_field(3, port)
        return field(1, field(1, socket))

    headers = [
        ("x-envoy-external-address", "127.0.0.1"),
        (":authority", "127.0.0.1:18080"),
        ("authorization", f"Bearer {token}"),
        ("accept", "*/*"),
        ("x-doc-owner", attrs["owner"]),
        (":path", path),
        ("x-request-id", "bb2b4c76-3a04-48b9-80d2-e1955ae6213f"),
        ("x-forwarded-for", "192.0.2.2"),
        ("x-doc-classification", attrs["classification"]),
        ("x-doc-status", attrs["status"]),
        (":method", "GET"),
        ("user-agent", "curl/7.88.1"),
        (":scheme", "http"),
        ("x-doc-department", attrs["department"]),
        ("x-forwarded-proto", "http"),
    ]
    http = field(1, b"17918898848581348968") + field(2, b"GET")
    for k, v in headers:
        http += field(3, field(1, k.encode()) + field(2, v.encode()))
    http += field(4, path.encode()) + field(5, b"127.0.0.1:18080") + field(6, b"http")
    http += field(10, b"HTTP/1.1")
    time = varint_field(1, 1_796_592_769) + varint_field(2, 404_114_000)
    request = field(1, time) + field(2, http)
    # AttributeContext: source=1, destination=2, request=4, metadata_context=11,
    # route_metadata_context=13 (both empty)
    attributes = field(1, peer(35262)) + field(2, peer(18080)) + field(4, request)
    attributes += field(11, b"") + field(13, b"")
    return field(1, attributes)


def main() -> None:
    source, token, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    req = json_format.Parse(source.read_text(), request_pb2.CheckResourcesRequest())
    (out / "check_resources.bin").write_bytes(grpc_frame(req.SerializeToString()))
    resource = req.resources[0].resource
    headers = {"authorization": f"Bearer {token}"}
    for name in ("owner", "department", "status", "classification"):
        headers[f"x-doc-{name}"] = resource.attr[name].string_value
    check = envoy_check_request("GET", f"/documents/{resource.id}", headers)
    (out / "ext_authz_check.bin").write_bytes(grpc_frame(check))
    attrs = {k[len("x-doc-"):]: v for k, v in headers.items() if k.startswith("x-doc-")}
    shaped = envoy_shaped_check_request(f"/documents/{resource.id}", token, attrs)
    (out / "ext_authz_check_envoy.bin").write_bytes(grpc_frame(shaped))
    if len(sys.argv) > 4:
        plan = json_format.Parse(Path(sys.argv[4]).read_text(), request_pb2.PlanResourcesRequest())
        (out / "plan_resources.bin").write_bytes(grpc_frame(plan.SerializeToString()))


if __name__ == "__main__":
    main()
