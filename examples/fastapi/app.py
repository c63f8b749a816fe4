"""A small in-memory documents API that ships NO authorization code.

Gatehouse (behind Envoy's ext_authz filter) decides every request before it gets here,
and injects who the caller is:

    x-gatehouse-principal      principal id, percent-encoded (required: without it the app answers 401)
    x-gatehouse-roles          comma-separated roles, each percent-encoded (`admin%2Cviewer`
                               is one role, `zo%C3%AB` is `zoë`): split on `,`, then unquote
    x-gatehouse-derived-roles  comma-separated derived roles that applied
    x-gatehouse-outputs        JSON outputs of the matched rules
    x-gatehouse-decision-id    id of the decision in Gatehouse's audit log
    x-gatehouse-filter         on list routes with `plan` (gatehouse.yaml): which documents
                               the caller may read, Cerbos's PlanResources filter as JSON
                               (gatehouse_filter.py turns it into the WHERE clause)

The app trusts these headers and nothing else about the caller (Envoy + Gatehouse strip
client-sent copies). It never decides *whether* a caller may do something; it only uses
the principal id as data (the owner of a new document) and echoes what it saw, in the
`seen_by` field of JSON bodies and in `x-seen-*` response headers, so that tests can
assert what reached it.

`GET /internal/documents/{id}/attributes` is for Gatehouse's attribute fetch only.
Envoy never routes `/internal/` (see envoy/envoy.yaml); keep this port off the network.

Run: uvicorn app:app --app-dir examples/fastapi --host 127.0.0.1 --port 8000

Set DOCUMENTS_API_TEST_HOOKS=1 to enable the endpoints tests/e2e uses under
/internal/test/ (request log, simulated attribute-source outage). Off by default.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import deque
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

import gatehouse_filter
from gatehouse_assertion import AssertionInvalid, AssertionVerifier
from gatehouse_fastapi import Gatehouse, GatehousePrincipal

PRINCIPAL = "x-gatehouse-principal"
ROLES = "x-gatehouse-roles"
DERIVED_ROLES = "x-gatehouse-derived-roles"
OUTPUTS = "x-gatehouse-outputs"
DECISION_ID = "x-gatehouse-decision-id"

TEST_HOOKS = os.environ.get("DOCUMENTS_API_TEST_HOOKS") == "1"
# Set GATEHOUSE_ASSERTION_JWKS_URL to refuse requests without Gatehouse's signed assertion
# (gatehouse_assertion.py): forged x-gatehouse-* headers sent straight to this port fail.
ASSERTIONS = AssertionVerifier.from_env()

Status = Literal["draft", "in_review", "approved"]
Classification = Literal["public", "internal", "confidential"]

# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------

SEED: list[dict[str, Any]] = [
    # alice (engineering): a draft she can edit and delete.
    {"id": "1", "title": "Design notes", "owner": "alice", "department": "engineering",
     "status": "draft", "classification": "internal", "amount": 0, "archived": False},
    # alice: under review, 5000 -> bob (engineering manager, limit 10000) may approve.
    {"id": "2", "title": "Q3 hardware budget", "owner": "alice", "department": "engineering",
     "status": "in_review", "classification": "internal", "amount": 5000, "archived": False},
    # alice: archived -> frozen for everyone but admins.
    {"id": "3", "title": "2023 offsite", "owner": "alice", "department": "engineering",
     "status": "in_review", "classification": "internal", "amount": 10, "archived": True},
    # carol (sales): under review; bob is not in sales, so he may not approve it.
    {"id": "4", "title": "Sales kickoff", "owner": "carol", "department": "sales",
     "status": "in_review", "classification": "internal", "amount": 2000, "archived": False},
    # alice: confidential and above bob's approval limit.
    {"id": "5", "title": "Acquisition plan", "owner": "alice", "department": "engineering",
     "status": "in_review", "classification": "confidential", "amount": 50000, "archived": False},
]


DOCUMENTS = sa.Table(
    "documents",
    sa.MetaData(),
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("title", sa.String, nullable=False),
    sa.Column("body", sa.String, nullable=False, default=""),
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("department", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("classification", sa.String, nullable=False),
    sa.Column("amount", sa.Integer, nullable=False, default=0),
    sa.Column("archived", sa.Boolean, nullable=False, default=False),
    sa.Column("approved_by", sa.String, nullable=True),
)


class Store:
    """The documents, in SQLite through SQLAlchemy (an in-memory database by default;
    DOCUMENTS_DB_URL names another, e.g. sqlite:///documents.db)."""

    def __init__(self, url: str | None = None) -> None:
        url = url or os.environ.get("DOCUMENTS_DB_URL", "sqlite+pysqlite:///:memory:")
        # One shared connection for an in-memory database, guarded by a lock.
        self.engine = sa.create_engine(url, poolclass=sa.pool.StaticPool,
                                       connect_args={"check_same_thread": False})
        self._lock = threading.Lock()
        DOCUMENTS.metadata.create_all(self.engine)
        self.reset()

    @staticmethod
    def _row(row: Any) -> dict[str, Any]:
        return {k: v for k, v in row._mapping.items() if v is not None}

    def reset(self, seed: list[dict[str, Any]] | None = None) -> None:
        with self._lock, self.engine.begin() as c:
            c.execute(DOCUMENTS.delete())
            c.execute(DOCUMENTS.insert(), [{"body": "", **d} for d in (seed or SEED)])
            self._ids = itertools.count(100)

    def list(self) -> list[dict[str, Any]]:
        return self.select(sa.select(DOCUMENTS))

    def select(self, query: sa.Select) -> list[dict[str, Any]]:
        with self._lock, self.engine.connect() as c:
            return [self._row(r) for r in c.execute(query.order_by(DOCUMENTS.c.id))]

    def get(self, doc_id: str) -> dict[str, Any]:
        with self._lock, self.engine.connect() as c:
            row = c.execute(sa.select(DOCUMENTS).where(DOCUMENTS.c.id == doc_id)).first()
        if row is None:
            raise HTTPException(status_code=404, detail=f"document {doc_id!r} not found")
        return self._row(row)

    def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        with self._lock, self.engine.begin() as c:
            doc_id = str(next(self._ids))
            c.execute(DOCUMENTS.insert().values(id=doc_id, archived=False, **fields))
        return self.get(doc_id)

    def update(self, doc_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        with self._lock, self.engine.begin() as c:
            done = c.execute(DOCUMENTS.update().where(DOCUMENTS.c.id == doc_id).values(**fields))
        if done.rowcount == 0:
            raise HTTPException(status_code=404, detail=f"document {doc_id!r} not found")
        return self.get(doc_id)

    def delete(self, doc_id: str) -> None:
        with self._lock, self.engine.begin() as c:
            done = c.execute(DOCUMENTS.delete().where(DOCUMENTS.c.id == doc_id))
        if done.rowcount == 0:
            raise HTTPException(status_code=404, detail=f"document {doc_id!r} not found")


store = Store()

# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------


class DocumentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(max_length=200)
    body: str = ""
    department: str
    classification: Classification = "internal"
    status: Literal["draft", "in_review"] = "draft"
    amount: int = Field(default=0, ge=0)


class DocumentReplace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(max_length=200)
    body: str = ""
    classification: Classification
    status: Literal["draft", "in_review"]
    amount: int = Field(ge=0)


class DocumentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, max_length=200)
    body: str | None = None
    classification: Classification | None = None
    status: Literal["draft", "in_review"] | None = None
    amount: int | None = Field(default=None, ge=0)


# ---------------------------------------------------------------------------------------
# The caller, as Gatehouse described it
# ---------------------------------------------------------------------------------------


NO_PRINCIPAL = "missing x-gatehouse-principal: request did not pass through Gatehouse"

# Reads and decodes the x-gatehouse-* headers (gatehouse_fastapi.py); 401 without them.
gatehouse = Gatehouse(required=True)


DOCS = ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")


def _is_open(path: str) -> bool:
    """Paths that need no principal: the health check, the API docs (which the Istio
    policy in deploy/istio leaves out of authorization) and Gatehouse's internal API."""
    return path == "/health" or path in DOCS or path.startswith("/internal/")


def seen_by(who: Annotated[GatehousePrincipal, Depends(gatehouse)]) -> dict[str, Any]:
    """What Gatehouse told us about this request, as the JSON bodies echo it."""
    return {
        "principal": who.id,
        "roles": list(who.roles),
        "derived_roles": list(who.derived_roles),
        "outputs": who.outputs or None,
        "decision_id": who.decision_id,
    }


# A dependency, so that a request without a principal gets 401 before its body is parsed.
Caller = Annotated[dict[str, Any], Depends(seen_by)]

# ---------------------------------------------------------------------------------------
# App
# ---------------------------------------------------------------------------------------

# redirect_slashes=False: `/documents/1/` is a 404 here rather than a redirect, so the
# app matches exactly the paths Envoy and Gatehouse see, no more.
app = FastAPI(title="Documents API (Gatehouse example)", redirect_slashes=False)

# Test hooks: every request as it arrived, and a switch for the attribute endpoint.
request_log: deque[dict[str, Any]] = deque(maxlen=5000)
attributes_down = threading.Event()


@app.middleware("http")
async def echo_and_record(request: Request, call_next):
    path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
    if TEST_HOOKS and not request.url.path.startswith("/internal/test/"):
        request_log.append({
            "method": request.method,
            "path": request.url.path,
            "raw_path": path,
            "query": request.url.query,
            "principal": request.headers.get(PRINCIPAL),
            "roles": request.headers.get(ROLES),
            "derived_roles": request.headers.get(DERIVED_ROLES),
            "outputs": request.headers.get(OUTPUTS),
            "decision_id": request.headers.get(DECISION_ID),
            "assertion": request.headers.get("x-gatehouse-assertion"),
            "filter": request.headers.get(gatehouse_filter.HEADER),
            "authorization": request.headers.get("authorization") is not None,
            # Envoy's router adds the first to every request it proxies; nginx (the
            # forward-auth tests) the second. Gatehouse's attribute fetches have neither.
            "via_envoy": "x-envoy-expected-rq-timeout-ms" in request.headers
            or "x-forwarded-for" in request.headers,
        })
    if not request.headers.get(PRINCIPAL) and not _is_open(request.url.path):
        # Defence in depth, before the body is even parsed: the request did not come
        # through Gatehouse (or Gatehouse let it through without a principal).
        response = JSONResponse(status_code=401, content={"detail": NO_PRINCIPAL})
    elif ASSERTIONS is not None and not _is_open(request.url.path):
        try:
            ASSERTIONS.verify(request.method, request.url.path, request.headers)
        except AssertionInvalid as e:
            return JSONResponse(status_code=401, content={"detail": str(e)})
        response = await call_next(request)
    else:
        response = await call_next(request)
    for name, header in (("principal", PRINCIPAL), ("roles", ROLES), ("decision-id", DECISION_ID)):
        value = request.headers.get(header)
        if value is not None:
            response.headers[f"x-seen-{name}"] = value
    return response


@app.get("/health", openapi_extra={"x-gatehouse-public": True})
def health() -> dict[str, str]:
    return {"status": "ok"}


GATEHOUSE_API_URL = os.environ.get("GATEHOUSE_API_URL", "http://127.0.0.1:3592")
ATTRS = ("owner", "department", "status", "classification", "amount", "archived")


COLUMNS = {f"request.resource.attr.{k}": DOCUMENTS.c[k] for k in ATTRS}


@app.get("/documents", tags=["document"], openapi_extra={"x-gatehouse-plan": {"action": "read"}})
def list_documents(request: Request, principal: Annotated[GatehousePrincipal, Depends(gatehouse)],
                   who: Caller) -> dict[str, Any]:
    if gatehouse_filter.HEADER in request.headers:
        # Behind the bundled gatehouse.yaml (`plan: {action: read}` on this route):
        # Gatehouse planned `read` for the caller and sent the filter; no call, no
        # authorization code, one helper call for the WHERE clause.
        try:
            where = gatehouse_filter.condition(request.headers, DOCUMENTS, COLUMNS)
        except gatehouse_filter.FilterError as e:
            raise HTTPException(status_code=503, detail=str(e)) from e
        return {"documents": store.select(sa.select(DOCUMENTS).where(where)), "seen_by": who}
    # Behind a route that decides `list` instead (deploy/kubernetes's gatehouse.yaml, or
    # a Gatehouse without plan routes): which documents the caller may read is one
    # PlanResources call to
    # Gatehouse's Cerbos API (the official SDK), turned into the query's WHERE clause by
    # the official cerbos-sqlalchemy adapter.
    from cerbos.sdk.client import CerbosClient
    from cerbos.sdk.model import Principal, ResourceDesc

    cerbos_principal = Principal(principal.id, roles=set(principal.roles), attr=principal.attr)
    try:
        with CerbosClient(GATEHOUSE_API_URL) as cerbos:
            plan = cerbos.plan_resources("read", cerbos_principal, ResourceDesc("document"))
    except Exception as e:  # noqa: BLE001 - fail closed on any API failure
        raise HTTPException(status_code=503, detail=f"authorization service unavailable: {e}") from e
    return {"documents": store.select(readable_query(plan)), "seen_by": who}


def readable_query(plan: Any) -> sa.Select:
    """The documents a PlanResources answer allows, as a SQLAlchemy query."""
    from cerbos_sqlalchemy import get_query

    return get_query(plan, DOCUMENTS, COLUMNS)


# What Gatehouse reads for each operation's resource attributes, as gatehouse.yaml's
# hand-written routes say it (`extAuthz.openapi` imports it from /openapi.json): the new
# document's body fields, else the stored document's attributes (a URL relative to the app).
CREATE_ATTRIBUTES = {"x-gatehouse-id": "new",
                     "x-gatehouse-attributes": {"body": ["department", "classification", "status"]}}
FETCHED_ATTRIBUTES = {"x-gatehouse-attributes": {"fetch": {
    "url": "/internal/documents/{doc_id}/attributes", "timeoutMs": 500, "cacheTtlMs": 2000}}}


@app.post("/documents", status_code=201, tags=["document"], openapi_extra=CREATE_ATTRIBUTES)
def create_document(doc: DocumentCreate, who: Caller) -> dict[str, Any]:
    created = store.create({**doc.model_dump(), "owner": who["principal"]})
    return {**created, "seen_by": who}


@app.get("/documents/{doc_id}", tags=["document"], openapi_extra=FETCHED_ATTRIBUTES)
def read_document(doc_id: str, who: Caller) -> dict[str, Any]:
    return {**store.get(doc_id), "seen_by": who}


@app.put("/documents/{doc_id}", tags=["document"], openapi_extra=FETCHED_ATTRIBUTES)
def replace_document(doc_id: str, doc: DocumentReplace, who: Caller) -> dict[str, Any]:
    return {**store.update(doc_id, doc.model_dump()), "seen_by": who}


@app.patch("/documents/{doc_id}", tags=["document"], openapi_extra=FETCHED_ATTRIBUTES)
def patch_document(doc_id: str, doc: DocumentPatch, who: Caller) -> dict[str, Any]:
    return {**store.update(doc_id, doc.model_dump(exclude_unset=True)), "seen_by": who}


@app.delete("/documents/{doc_id}", tags=["document"], openapi_extra=FETCHED_ATTRIBUTES)
def delete_document(doc_id: str, who: Caller) -> dict[str, Any]:
    store.delete(doc_id)
    return {"deleted": doc_id, "seen_by": who}


@app.post("/documents/{doc_id}/approve", tags=["document"],
          openapi_extra={"x-gatehouse-action": "approve", **FETCHED_ATTRIBUTES})
def approve_document(doc_id: str, who: Caller) -> dict[str, Any]:
    doc = store.get(doc_id)
    # A state check, not an authorization one: only documents under review can move on.
    if doc["status"] != "in_review":
        raise HTTPException(status_code=409, detail=f"document {doc_id!r} is {doc['status']}")
    updated = store.update(doc_id, {"status": "approved", "approved_by": who["principal"]})
    return {**updated, "seen_by": who}


@app.get("/internal/documents/{doc_id}/attributes", include_in_schema=False)
def document_attributes(doc_id: str) -> dict[str, Any]:
    """The resource attributes the policies need (Gatehouse's `attributes.fetch`)."""
    if attributes_down.is_set():
        raise HTTPException(status_code=503, detail="attribute source unavailable (test hook)")
    doc = store.get(doc_id)
    keys = ("owner", "department", "status", "classification", "amount", "archived")
    return {k: doc[k] for k in keys}


if TEST_HOOKS:

    @app.get("/internal/test/requests", include_in_schema=False)
    def test_requests() -> list[dict[str, Any]]:
        return list(request_log)

    @app.post("/internal/test/attributes-down", include_in_schema=False)
    def test_attributes_down(down: bool = True) -> dict[str, bool]:
        if down:
            attributes_down.set()
        else:
            attributes_down.clear()
        return {"down": attributes_down.is_set()}

    @app.get("/internal/test/documents", include_in_schema=False)
    def test_documents() -> list[dict[str, Any]]:
        return store.list()

    @app.post("/internal/test/documents", include_in_schema=False)
    def test_add_documents(rows: list[dict[str, Any]]) -> dict[str, int]:
        with store._lock, store.engine.begin() as c:
            c.execute(DOCUMENTS.insert(), [{"body": "", **d} for d in rows])
        return {"added": len(rows)}

    @app.delete("/internal/test/documents", include_in_schema=False)
    def test_remove_documents(prefix: str) -> dict[str, int]:
        with store._lock, store.engine.begin() as c:
            done = c.execute(DOCUMENTS.delete().where(DOCUMENTS.c.id.startswith(prefix, autoescape=True)))
        return {"removed": done.rowcount}

    @app.post("/internal/test/reset", include_in_schema=False)
    def test_reset() -> dict[str, bool]:
        store.reset()
        request_log.clear()
        attributes_down.clear()
        return {"reset": True}
