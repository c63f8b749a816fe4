"""Writes the gRPC request bodies (5-byte gRPC frame + protobuf) that benches/load.sh sends
with h2load:

- check_resources.bin: the CheckResourcesRequest in ../shared/bench/check_resources.json,
  encoded with the official Cerbos SDK's generated messages;
- plan_resources.bin: the PlanResourcesRequest in benches/load/plan_resources.json (the
  same policies; a principal whose `read` plan is conditional);
- ext_authz_check.bin: an Envoy CheckRequest for `GET /documents/<id>` of the same
  resource, with a bearer token and the resource attributes as `x-doc-*` headers, encoded
  by hand (envoy.service.auth.v3; field numbers below).

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
    if len(sys.argv) > 4:
        plan = json_format.Parse(Path(sys.argv[4]).read_text(), request_pb2.PlanResourcesRequest())
        (out / "plan_resources.bin").write_bytes(grpc_frame(plan.SerializeToString()))


if __name__ == "__main__":
    main()
