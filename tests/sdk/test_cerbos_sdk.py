"""The official Cerbos Python SDK (PyPI `cerbos`) against Gatehouse, unchanged: the HTTP
client (`cerbos.sdk.client.CerbosClient`), its async twin, and the gRPC client
(`cerbos.sdk.grpc.client.CerbosClient`)."""

from __future__ import annotations

import json

import grpc
import pytest
from cerbos.engine.v1 import engine_pb2
from cerbos.request.v1 import request_pb2
from cerbos.sdk.client import AsyncCerbosClient, CerbosClient
from cerbos.sdk.grpc.client import CerbosClient as GrpcCerbosClient
from cerbos.sdk.model import (
    JWT,
    AuxData,
    CerbosRequestException,
    Effect,
    Principal,
    Resource,
    ResourceAction,
    ResourceList,
)
from google.protobuf.struct_pb2 import Value


def token(server) -> str:
    """The corpus's test token (signed with auxdata/keys/signing_key.jwk, kid of key set `cerbos`)."""
    case = json.loads((server.corpus / "golden/api/check_resources/cr_case_01.json").read_text())
    return case["request"]["auxData"]["jwt"]["token"]


def john() -> Principal:
    return Principal(
        id="john",
        roles={"employee"},
        policy_version="20210210",
        attr={"department": "marketing", "geography": "GB", "team": "design"},
    )


def leave_request(rid: str = "XX125", owner: str = "john") -> Resource:
    return Resource(
        id=rid,
        kind="leave_request",
        policy_version="20210210",
        attr={"department": "marketing", "geography": "GB", "id": rid, "owner": owner, "team": "design"},
    )


# === HTTP client ===


def test_http_health_and_decisions(server):
    with CerbosClient(server.http_url) as c:
        assert c.is_healthy()
        resp = c.check_resources(
            principal=john(),
            resources=ResourceList(
                resources=[
                    ResourceAction(leave_request(), actions={"view:public", "approve"}),
                    ResourceAction(leave_request("YY125", "jenny"), actions={"view:public"}),
                ]
            ),
            request_id="sdk-http-1",
        )
        resp.raise_if_failed()
        assert resp.request_id == "sdk-http-1"
        first = resp.get_resource("XX125")
        assert first.is_allowed("view:public")
        assert not first.is_allowed("approve")
        assert first.actions["approve"] == Effect.DENY
        assert resp.get_resource("YY125").is_allowed("view:public")
        assert c.is_allowed("view:public", john(), leave_request())
        assert not c.is_allowed("approve", john(), leave_request())


def test_http_aux_data_jwt(server):
    with CerbosClient(server.http_url) as c:
        aux = AuxData(jwt=JWT(token=token(server), key_set_id="cerbos"))
        assert c.is_allowed("defer", john(), leave_request(), aux_data=aux)
        assert not c.is_allowed("defer", john(), leave_request())
        bad = c.check_resources(
            principal=john(),
            resources=ResourceList().add(leave_request(), {"defer"}),
            aux_data=AuxData(jwt=JWT(token="not.a.token", key_set_id="cerbos")),
        )
        assert bad.failed()
        assert bad.status_code == 400
        assert bad.status_msg.code == 3
        assert bad.status_msg.message == "invalid auxData"


def test_http_validation_errors_are_cerbos_shaped(server):
    with CerbosClient(server.http_url) as c:
        resp = c.check_resources(
            principal=Principal(id="", roles={"employee"}),
            resources=ResourceList().add(leave_request(), {"view:public"}),
        )
        assert resp.status_code == 400
        with pytest.raises(CerbosRequestException) as err:
            resp.raise_if_failed()
        assert err.value.error.code == 3
        assert err.value.error.message == "validation error: principal.id: value is required"


def test_http_schema_validation_errors(server):
    with CerbosClient(server.http_url) as c:
        p = john()
        p.attr["department"] = "accounting"
        resp = c.check_resources(principal=p, resources=ResourceList().add(leave_request(), {"view:public"}))
        result = resp.get_resource("XX125")
        assert not result.is_allowed("view:public")
        assert {(e.source.value, e.path) for e in result.validation_errors} == {("SOURCE_PRINCIPAL", "/department")}


def test_http_async_client(server):
    import asyncio

    async def run():
        async with AsyncCerbosClient(server.http_url) as c:
            assert await c.is_healthy()
            return await c.is_allowed("view:public", john(), leave_request())

    assert asyncio.run(run())


# === gRPC client ===


def grpc_principal() -> engine_pb2.Principal:
    return engine_pb2.Principal(
        id="john",
        roles=["employee"],
        policy_version="20210210",
        attr={
            "department": Value(string_value="marketing"),
            "geography": Value(string_value="GB"),
            "team": Value(string_value="design"),
        },
    )


def grpc_resource(rid: str = "XX125") -> engine_pb2.Resource:
    return engine_pb2.Resource(
        id=rid,
        kind="leave_request",
        policy_version="20210210",
        attr={
            "department": Value(string_value="marketing"),
            "geography": Value(string_value="GB"),
            "id": Value(string_value=rid),
            "owner": Value(string_value="john"),
            "team": Value(string_value="design"),
        },
    )


def test_grpc_decisions_and_server_info(server):
    with GrpcCerbosClient(server.grpc, tls_verify=False) as c:
        resp = c.check_resources(
            principal=grpc_principal(),
            resources=[
                request_pb2.CheckResourcesRequest.ResourceEntry(
                    actions=["view:public", "approve"], resource=grpc_resource()
                )
            ],
            request_id="sdk-grpc-1",
        )
        assert resp.request_id == "sdk-grpc-1"
        assert len(resp.cerbos_call_id) == 26
        (result,) = resp.results
        assert result.resource.id == "XX125"
        assert dict(result.actions) == {"view:public": 1, "approve": 2}  # EFFECT_ALLOW, EFFECT_DENY
        assert c.is_allowed("view:public", grpc_principal(), grpc_resource())
        aux = request_pb2.AuxData(jwt=request_pb2.AuxData.JWT(token=token(server), key_set_id="cerbos"))
        assert c.is_allowed("defer", grpc_principal(), grpc_resource(), aux_data=aux)
        info = c.server_info()
        assert info.version and info.commit and info.build_date


def test_grpc_errors(server):
    with GrpcCerbosClient(server.grpc, tls_verify=False) as c:
        with pytest.raises(grpc.RpcError) as err:
            c.check_resources(principal=engine_pb2.Principal(id="john", roles=["employee"]), resources=[])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == "validation error: resources: value is required"
        with pytest.raises(grpc.RpcError) as err:
            c.plan_resources(
                ["view", "view"],
                grpc_principal(),
                engine_pb2.PlanResourcesInput.Resource(kind="leave_request"),
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == "validation error: actions: repeated value must contain unique items"


# === PlanResources (answers of the real Cerbos 0.55 for the same requests) ===


def test_http_plan_resources(server):
    from cerbos.sdk.model import PlanResourcesFilterKind, ResourceDesc

    with CerbosClient(server.http_url) as c:
        resource = ResourceDesc("leave_request", policy_version="20210210")
        plan = c.plan_resources("create", john(), resource, request_id="sdk-plan-1")
        plan.raise_if_failed()
        assert plan.request_id == "sdk-plan-1"
        assert plan.action == ["create"]
        assert plan.filter.kind == PlanResourcesFilterKind.CONDITIONAL
        expr = plan.filter.condition.expression
        assert expr.operator == "eq"
        assert [o.to_dict() for o in expr.operands] == [
            {"variable": "request.resource.attr.owner"},
            {"value": "john"},
        ]
        assert c.plan_resources("view:public", john(), resource).filter.kind == PlanResourcesFilterKind.ALWAYS_ALLOWED
        both = c.plan_resources(["view:public", "delete"], john(), resource)
        assert both.filter.kind == PlanResourcesFilterKind.ALWAYS_DENIED


def test_grpc_plan_resources(server):
    with GrpcCerbosClient(server.grpc, tls_verify=False) as c:
        resource = engine_pb2.PlanResourcesInput.Resource(kind="leave_request", policy_version="20210210")
        plan = c.plan_resources("view", grpc_principal(), resource, request_id="sdk-plan-2")
        assert plan.request_id == "sdk-plan-2"
        assert plan.filter.kind == engine_pb2.PlanResourcesFilter.KIND_CONDITIONAL
        expr = plan.filter.condition.expression
        assert expr.operator == "eq"
        assert expr.operands[0].variable == "request.resource.attr.public"
        assert expr.operands[1].value.bool_value is True
        assert len(plan.cerbos_call_id) == 26
