"""Gatehouse's proto/ against the descriptors shipped in the official Cerbos SDK: every field
of every message we declare has the same number, type, cardinality, message/enum type and
JSON name upstream, every enum value the same number, every RPC the same types. Needs no
server."""

from __future__ import annotations

from pathlib import Path

import grpc_tools
from buf.validate import validate_pb2  # noqa: F401 - registers upstream descriptors
from cerbos.svc.v1 import svc_pb2  # noqa: F401
from google.protobuf import descriptor_pb2, descriptor_pool
from google.rpc import status_pb2  # noqa: F401
from grpc_tools import protoc

PROTO = Path(__file__).resolve().parents[2] / "proto"


def field_signature(f):
    return (
        f.number,
        f.type,
        f.is_repeated,
        f.message_type.full_name if f.message_type else None,
        f.enum_type.full_name if f.enum_type else None,
        f.json_name,
    )


def test_proto_matches_cerbos(tmp_path):
    out = tmp_path / "ours.pb"
    include = Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(
        [
            "protoc",
            f"-I{PROTO}",
            f"-I{include}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            "cerbos/svc/v1/svc.proto",
            "buf/validate/validate.proto",
            "google/rpc/status.proto",
        ]
    )
    assert rc == 0
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(out.read_bytes())
    ours = descriptor_pool.DescriptorPool()
    for f in fds.file:
        ours.Add(f)
    upstream = descriptor_pool.Default()

    problems, checked = [], 0

    def compare(md):
        nonlocal checked
        ref = upstream.FindMessageTypeByName(md.full_name)
        for f in md.fields:
            checked += 1
            r = ref.fields_by_name.get(f.name)
            if r is None or field_signature(f) != field_signature(r):
                problems.append(f"{md.full_name}.{f.name}: ours {field_signature(f)}, upstream {r and field_signature(r)}")
        for nested in md.nested_types:
            compare(nested)

    for f in fds.file:
        if f.package.startswith("google.protobuf"):
            continue
        fd = ours.FindFileByName(f.name)
        for md in fd.message_types_by_name.values():
            compare(md)
        for e in fd.enum_types_by_name.values():
            ref = upstream.FindEnumTypeByName(e.full_name)
            for v in e.values:
                checked += 1
                if ref.values_by_name[v.name].number != v.number:
                    problems.append(f"{e.full_name}.{v.name}")
    service = ours.FindServiceByName("cerbos.svc.v1.CerbosService")
    ref_service = upstream.FindServiceByName("cerbos.svc.v1.CerbosService")
    for m in service.methods:
        checked += 1
        r = ref_service.methods_by_name[m.name]
        if (m.input_type.full_name, m.output_type.full_name) != (r.input_type.full_name, r.output_type.full_name):
            problems.append(f"rpc {m.name}")
    assert not problems, problems
    assert checked >= 90
