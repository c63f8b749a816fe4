"""examples/fastapi/gatehouse_fastapi.py: the Depends() that reads Gatehouse's headers into a
typed principal. With FastAPI's TestClient (no stack), then end to end through Envoy and
Gatehouse (the example app reads its caller with the helper)."""


from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from gatehouse_fastapi import Gatehouse, GatehousePrincipal, MalformedHeader, decode_list

import mint_token


def _client(gatehouse: Gatehouse) -> TestClient:
    api = FastAPI()

    @api.get("/who")
    def who(p: Annotated[GatehousePrincipal | None, Depends(gatehouse)]) -> dict:
        if p is None:
            return {"anonymous": True}
        return {"id": p.id, "roles": list(p.roles), "attr": p.attr,
                "derived_roles": list(p.derived_roles), "outputs": p.outputs,
                "decision_id": p.decision_id, "is_owner": p.has_role("owner"),
                "limit": p.output("resource.document.vdefault#approve")}

    return TestClient(api)


HEADERS = {
    "x-gatehouse-principal": "zo%C3%AB",
    "x-gatehouse-roles": "user,admin%2Cviewer",
    "x-gatehouse-principal-attr": '{"department": "fa\\u00e7ade", "limit": 5}',
    "x-gatehouse-derived-roles": "owner,same_department",
    "x-gatehouse-outputs": '[{"src": "resource.document.vdefault#approve", "action": "approve",'
                           ' "val": 10000}]',
    "x-gatehouse-decision-id": "d-1",
}


def test_helper_decodes_gatehouse_encodings():
    r = _client(Gatehouse()).get("/who", headers=HEADERS)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": "zoë", "roles": ["user", "admin,viewer"],  # a comma inside a role: one role
        "attr": {"department": "façade", "limit": 5},
        "derived_roles": ["owner", "same_department"],
        "outputs": [{"src": "resource.document.vdefault#approve", "action": "approve",
                     "val": 10000}],
        "decision_id": "d-1", "is_owner": True, "limit": 10000,
    }


def test_helper_refuses_requests_without_the_headers_when_required():
    r = _client(Gatehouse()).get("/who")
    assert r.status_code == 401
    assert "missing x-gatehouse-principal" in r.json()["detail"]
    # Not required: the dependency gives None.
    assert _client(Gatehouse(required=False)).get("/who").json() == {"anonymous": True}
    # Another header prefix (extAuthz.headerPrefix).
    custom = {"x-auth-principal": "bob", "x-auth-roles": "manager"}
    r = _client(Gatehouse(prefix="X-Auth-")).get("/who", headers=custom)
    assert r.json()["id"] == "bob" and r.json()["roles"] == ["manager"]
    assert _client(Gatehouse(prefix="x-auth-")).get("/who", headers=HEADERS).status_code == 401


@pytest.mark.parametrize("name,value", [
    ("x-gatehouse-principal", "zo%C3"),        # not UTF-8
    ("x-gatehouse-principal", "a%zzb"),        # bad escape
    ("x-gatehouse-principal", "a%0Ab"),        # control character
    ("x-gatehouse-roles", "user,,admin"),      # an empty role
    ("x-gatehouse-principal-attr", "[1]"),     # not an object
    ("x-gatehouse-outputs", "{not json"),
])
def test_helper_refuses_malformed_headers(name, value):
    r = _client(Gatehouse(required=False)).get("/who", headers={**HEADERS, name: value})
    assert r.status_code == 401, (name, value, r.text)
    assert r.json()["detail"].startswith("malformed Gatehouse header")


def test_decode_list_splits_before_decoding():
    assert decode_list("a%2Cb,c") == ("a,b", "c")
    assert decode_list(None) == ()
    with pytest.raises(MalformedHeader):
        decode_list("a,%")


def test_helper_end_to_end_through_envoy_and_gatehouse(client, app):
    """The example app reads its caller with the helper: through Envoy and Gatehouse a
    principal with an accented id, a role holding a comma and attributes arrives decoded."""
    claims = mint_token.claims_for(sub="zoë", roles=["user", "admin,viewer"], department="façade")
    token = mint_token.sign(claims)
    r = client.post("/documents", token=token, json={"title": "t", "department": "façade"})
    assert r.status_code == 201, r.text
    seen = r.json()["seen_by"]
    assert seen["principal"] == "zoë"
    assert seen["roles"] == ["user", "admin,viewer"]
    assert seen["decision_id"]
    # GET /documents builds the Cerbos principal from the helper's attr (principal-attr).
    r = client.get("/documents", token=token)
    assert r.status_code == 200, r.text
    assert r.json()["documents"], "the caller's own document, seen through principal.attr"
    # Straight to the app (no Gatehouse): refused by the helper.
    import httpx
    assert httpx.get(f"{app.url}/documents/1").status_code == 401
