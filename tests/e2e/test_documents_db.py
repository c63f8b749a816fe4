"""Issue 14: the example app lists documents from SQLite (SQLAlchemy) with one PlanResources
call through the official `cerbos` SDK, turned into a WHERE clause by `cerbos-sqlalchemy`.

The app runs in-process (FastAPI's TestClient) against the session's Gatehouse (its Cerbos
HTTP API, bundled policies), its database seeded with 300 generated documents; for every
demo principal the listed rows are exactly those CheckResources allows one by one.
"""

from __future__ import annotations

import importlib
import json
import random
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "examples" / "fastapi"


def _seed(n: int) -> list[dict]:
    rng = random.Random(14)
    owners = ["alice", "bob", "carol", "root", "svc-reporting", "dave"]
    return [
        {
            "id": f"g{i:04d}",
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
def documents_app(gatehouse, monkeypatch):
    from conftest import GATEHOUSE_API_PORT

    monkeypatch.setenv("GATEHOUSE_API_URL", f"http://127.0.0.1:{GATEHOUSE_API_PORT}")
    monkeypatch.syspath_prepend(str(APP_DIR))
    for name in ("app", "mint_token"):
        sys.modules.pop(name, None)
    module = importlib.import_module("app")
    yield module
    sys.modules.pop("app", None)


def test_listed_rows_are_exactly_what_check_resources_allows(documents_app):
    from cerbos.sdk.client import CerbosClient
    from cerbos.sdk.model import Principal, Resource, ResourceAction, ResourceList
    from fastapi.testclient import TestClient
    from mint_token import PRESETS

    rows = _seed(300)
    documents_app.store.reset(rows)
    client = TestClient(documents_app.app)
    ever_some, ever_not_all = False, False
    for name, preset in PRESETS.items():
        attr = {k: v for k, v in preset.items() if k not in ("sub", "roles")}
        headers = {
            "x-gatehouse-principal": quote(preset["sub"], safe=""),
            "x-gatehouse-roles": ",".join(quote(r, safe="") for r in preset["roles"]),
            "x-gatehouse-principal-attr": json.dumps(attr),
        }
        r = client.get("/documents", headers=headers)
        assert r.status_code == 200, r.text
        listed = {d["id"] for d in r.json()["documents"]}

        principal = Principal(preset["sub"], roles=set(preset["roles"]), attr=attr)
        keys = ("owner", "department", "status", "classification", "amount", "archived")
        allowed = set()
        with CerbosClient(documents_app.GATEHOUSE_API_URL) as cerbos:
            for start in range(0, len(rows), 50):  # Cerbos's default limit per request
                batch = rows[start:start + 50]
                answer = cerbos.check_resources(principal=principal, resources=ResourceList(resources=[
                    ResourceAction(Resource(d["id"], "document", attr={k: d[k] for k in keys}),
                                   actions={"read"})
                    for d in batch
                ]))
                allowed |= {d["id"] for d in batch if answer.get_resource(d["id"]).is_allowed("read")}
        assert listed == allowed, f"{name}: listed-only {sorted(listed - allowed)[:5]}, missing {sorted(allowed - listed)[:5]}"
        ever_some |= bool(listed)
        ever_not_all |= len(listed) < len(rows)
    assert ever_some and ever_not_all, "the seed must separate the principals"
    documents_app.store.reset()
