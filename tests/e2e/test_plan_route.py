"""Issue 14: list filtering behind Envoy with no authorization code in the app.

The bundled gatehouse.yaml has `plan: {action: read}` on `GET /documents`: Gatehouse plans
`read` for the caller (Cerbos's PlanResources) and hands the filter to the app in
`x-gatehouse-filter`; the app turns it into its WHERE clause with one call
(examples/fastapi/gatehouse_filter.py, cerbos-sqlalchemy). Through real Envoy, in both
ext_authz modes (gRPC and HTTP), and through nginx's forward-auth:

* every demo principal lists exactly the rows CheckResources allows, over a few hundred
  generated rows;
* a principal who may read nothing gets 403 from Gatehouse, and the app is not asked;
* a client's forged `x-gatehouse-filter` never reaches the app (Gatehouse's own stripping,
  with Envoy's early stripping off);
* a filter over `extAuthz.maxFilterBytes` (8 KiB) is a 503 with a log line, never a
  shortened filter.
"""

from __future__ import annotations

import json
import random
import time

import httpx
import pytest

import mint_token
import stack
from helpers import Client, assert_denied

FILTER = "x-gatehouse-filter"
FORGED = '{"kind":"KIND_ALWAYS_ALLOWED"}'
KEYS = ("owner", "department", "status", "classification", "amount", "archived")
PREFIX = "plan-e2e-"


def _rows(n: int) -> list[dict]:
    rng = random.Random(1414)
    owners = ["alice", "bob", "carol", "root", "svc-reporting", "dave"]
    return [
        {
            "id": f"{PREFIX}{i:04d}",
            "title": f"generated {i}",
            "owner": rng.choice(owners),
            "department": rng.choice(["engineering", "sales", "it", "none"]),
            "status": rng.choice(["draft", "in_review", "approved"]),
            "classification": rng.choice(["public", "internal", "confidential"]),
            "amount": rng.choice([0, 10, 5000, 10000, 10001, 50000]),
            "archived": rng.random() < 0.2,
        }
        for i in range(n)
    ]


@pytest.fixture()
def generated(app):
    """A few hundred extra documents in the app's database for one test, removed after."""
    r = httpx.post(f"{app.url}/internal/test/documents", json=_rows(300), timeout=10)
    r.raise_for_status()
    yield
    httpx.request("DELETE", f"{app.url}/internal/test/documents", params={"prefix": PREFIX},
                  timeout=10).raise_for_status()


def _allowed_by_check_resources(gatehouse: stack.Gatehouse, name: str, rows: list[dict]) -> set[str]:
    """The ids CheckResources (Gatehouse's Cerbos API, official SDK) allows `read` on,
    for the principal Gatehouse makes of the preset's token."""
    from cerbos.sdk.client import CerbosClient
    from cerbos.sdk.model import Principal, Resource, ResourceAction, ResourceList

    claims = mint_token.claims_for(**{k: v for k, v in mint_token.PRESETS[name].items()})
    attr = {k: claims[k] for k in ("department", "clearances", "approval_limit", "email")}
    principal = Principal(claims["sub"], roles=set(claims["roles"]), attr=attr)
    allowed: set[str] = set()
    with CerbosClient(f"http://127.0.0.1:{gatehouse.http_port}") as cerbos:
        for start in range(0, len(rows), 50):  # Cerbos's default limit per request
            batch = rows[start:start + 50]
            answer = cerbos.check_resources(principal=principal, resources=ResourceList(resources=[
                ResourceAction(Resource(d["id"], "document", attr={k: d[k] for k in KEYS}),
                               actions={"read"})
                for d in batch
            ]))
            allowed |= {d["id"] for d in batch if answer.get_resource(d["id"]).is_allowed("read")}
    return allowed


def test_every_principal_lists_exactly_what_check_resources_allows(client, app, gatehouse, generated):
    rows = httpx.get(f"{app.url}/internal/test/documents", timeout=10).json()
    assert len(rows) >= 300
    kinds = set()
    for name in mint_token.PRESETS:
        mark = app.mark()
        r = client.get("/documents", as_=name)
        assert r.status_code == 200, f"{name}: {r.status_code} {r.text}"
        listed = {d["id"] for d in r.json()["documents"]}
        (hit,) = app.since(mark)
        # The filter came from Gatehouse with the request: no call back, no SDK.
        handed = json.loads(hit["filter"])
        kinds.add(handed["kind"])
        allowed = _allowed_by_check_resources(gatehouse, name, rows)
        assert listed == allowed, (
            f"{name}: listed-only {sorted(listed - allowed)[:5]}, missing {sorted(allowed - listed)[:5]}"
        )
    assert kinds == {"KIND_CONDITIONAL", "KIND_ALWAYS_ALLOWED"}, kinds
    metrics = httpx.get(f"http://127.0.0.1:{gatehouse.admin_port}/metrics", timeout=5).text
    assert 'filter="conditional",kind="document",action="read",origin="ext_authz"' in metrics


def test_a_principal_who_may_read_nothing_gets_403_and_the_app_is_not_asked(client, app):
    token = mint_token.sign(mint_token.claims_for(sub="gus", roles=["guest"], department="none"))
    mark = app.mark()
    body = assert_denied(client.get("/documents", token=token), app, mark, status=403)
    assert body["detail"] == "forbidden"


def test_a_forged_filter_never_reaches_the_app(envoy_noearly, tokens, app):
    """Envoy's early x-gatehouse-* stripping is off here: Gatehouse's answer alone keeps a
    client's filter from the app, on the plan route (replaced) and elsewhere (removed)."""
    c = Client(envoy_noearly, tokens)
    try:
        mark = app.mark()
        honest = c.get("/documents", as_="carol")
        assert honest.status_code == 200, honest.text
        (hit,) = app.since(mark)
        real = hit["filter"]
        mark = app.mark()
        forged = c.get("/documents", as_="carol", headers={FILTER: FORGED})
        assert forged.status_code == 200, forged.text
        (hit,) = app.since(mark)
        assert hit["filter"] == real != FORGED
        assert forged.json()["documents"] == honest.json()["documents"]
        mark = app.mark()
        r = c.get("/documents/4", as_="carol", headers={FILTER: FORGED})
        assert r.status_code == 200, r.text
        (hit,) = app.since(mark)
        assert hit["filter"] is None
        # Denied: nothing reaches the app at all.
        guest = mint_token.sign(mint_token.claims_for(sub="gus", roles=["guest"], department="x"))
        mark = app.mark()
        assert_denied(c.get("/documents", token=guest, headers={FILTER: FORGED}), app, mark)
    finally:
        c.close()


def test_a_filter_over_the_bound_is_503_with_a_log_line(client, app, gatehouse, mode):
    """The principal's id is part of alice-like filters (`R.attr.owner == P.id`): a
    9,000-character id makes the filter larger than the default 8 KiB bound. (Envoy's
    HTTP ext_authz answers any 5xx of the authorization service with its own empty 503,
    `status_on_error`; the gRPC mode passes Gatehouse's JSON body on.)"""
    sub = "x" * 9000
    token = mint_token.sign(mint_token.claims_for(sub=sub, roles=["user"], department="engineering",
                                                  email="long@example.test"))
    mark = app.mark()
    r = client.get("/documents", token=token)
    assert r.status_code == 503, r.text
    assert app.since(mark) == []
    decision = ""
    if mode == "grpc":
        body = assert_denied(r, app, mark, status=503)
        assert body["detail"] == "service unavailable"
        decision = body["decision_id"]
    deadline = time.monotonic() + 5
    line = ""
    while time.monotonic() < deadline and not line:
        log = gatehouse.proc.log_path.read_text(errors="replace")
        line = next((l for l in reversed(log.splitlines())
                     if "larger than extAuthz.maxFilterBytes" in l and decision in l), "")
        time.sleep(0.1)
    assert line, "no log line for the oversize filter"
    assert "limit=8192" in line, line
    # The same caller on an ordinary route is unaffected (engineering reads doc 1).
    assert client.get("/documents/1", token=token).status_code == 200


def test_list_through_nginx_gets_the_filter(nginx_client, app):
    mark = app.mark()
    r = nginx_client.get("/documents", as_="carol")
    assert r.status_code == 200, r.text
    (hit,) = app.since(mark)
    assert json.loads(hit["filter"])["kind"] == "KIND_CONDITIONAL"
    assert {d["id"] for d in r.json()["documents"]} & {"1", "2", "3", "4", "5"} == {"4"}
    mark = app.mark()
    r = nginx_client.get("/documents", as_="carol", headers={FILTER: FORGED})
    assert r.status_code == 200, r.text
    (hit,) = app.since(mark)
    assert hit["filter"] != FORGED


def test_the_helper_fails_closed_on_a_missing_or_malformed_filter(monkeypatch):
    """gatehouse_filter.condition: ALWAYS_ALLOWED is true, ALWAYS_DENIED false, and a
    header that is missing or not Gatehouse's raises instead of listing everything."""
    import sqlalchemy as sa

    monkeypatch.syspath_prepend(str(stack.APP_DIR))
    import gatehouse_filter

    table = sa.Table("t", sa.MetaData(), sa.Column("owner", sa.String))
    cols = {"request.resource.attr.owner": table.c.owner}
    sql = lambda h: str(gatehouse_filter.condition(h, table, cols).compile(  # noqa: E731
        compile_kwargs={"literal_binds": True}))
    assert sql({FILTER: '{"kind":"KIND_ALWAYS_ALLOWED"}'}) == "true"
    assert sql({FILTER: '{"kind":"KIND_ALWAYS_DENIED"}'}) == "false"
    cond = ('{"kind":"KIND_CONDITIONAL","condition":{"expression":{"operator":"eq","operands":'
            '[{"variable":"request.resource.attr.owner"},{"value":"zo\\u00eb"}]}}}')
    assert sql({FILTER: cond}) == "t.owner = 'zoë'"
    for bad in [None, "", "{", "[]", '{"kind":"KIND_NOPE"}', '{"kind":"KIND_CONDITIONAL"}',
                '{"kind":"KIND_ALWAYS_ALLOWED","condition":{"value":true}}',
                '{"kind":"KIND_ALWAYS_ALLOWED","extra":1}', "x" * (64 * 1024)]:
        headers = {} if bad is None else {FILTER: bad}
        with pytest.raises(gatehouse_filter.FilterError):
            gatehouse_filter.condition(headers, table, cols)
