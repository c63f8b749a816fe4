"""Gatehouse's list filter (`x-gatehouse-filter`) as a SQLAlchemy condition: one call.

A Gatehouse route with `plan: {action: read}` (gatehouse.yaml) answers a list request with a
query plan instead of a yes/no: Gatehouse runs Cerbos's PlanResources for the caller and
the route's resource kind, answers 403 itself when nothing is readable, and otherwise hands
the app the filter in `x-gatehouse-filter`, as compact JSON in Cerbos's filter shape:

    {"kind": "KIND_ALWAYS_ALLOWED"}
    {"kind": "KIND_CONDITIONAL", "condition": {"expression": {"operator": "eq", "operands":
        [{"variable": "request.resource.attr.owner"}, {"value": "alice"}]}}}

This module turns it into a WHERE condition with the official `cerbos-sqlalchemy` adapter
(its `get_query` takes a PlanResourcesResponse; one is built from the header with the
`cerbos` SDK's model classes):

    from gatehouse_filter import condition

    @app.get("/documents")
    def list_documents(request: Request):
        where = condition(request.headers, DOCUMENTS,
                          {"request.resource.attr.owner": DOCUMENTS.c.owner, ...})
        rows = session.execute(sa.select(DOCUMENTS).where(where))

Gatehouse replaces or removes any `x-gatehouse-filter` a client sends. A missing or
malformed header raises `FilterError` (answer 503: fail closed, never list everything);
pair with `gatehouse_assertion.py` when the app's port could be reached directly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

HEADER = "x-gatehouse-filter"
# Gatehouse's extAuthz.maxFilterBytes is at most 48 KiB; anything longer is not its header.
MAX_BYTES = 48 * 1024


class FilterError(ValueError):
    """The filter header is missing or not a filter Gatehouse would send."""


def plan(headers: Mapping[str, str], *, header: str = HEADER) -> Any:
    """The header as the `cerbos` SDK's PlanResourcesResponse (what `get_query` takes)."""
    from cerbos.sdk.model import PlanResourcesFilter, PlanResourcesResponse

    raw = headers.get(header)
    if raw is None:
        raise FilterError(f"missing {header}: the route is not a Gatehouse plan route")
    if len(raw) > MAX_BYTES:
        raise FilterError(f"{header} is longer than {MAX_BYTES} bytes")
    try:
        document = json.loads(raw)
        if not isinstance(document, dict) or set(document) - {"kind", "condition"}:
            raise ValueError("not a filter object")
        if (document.get("kind") == "KIND_CONDITIONAL") != ("condition" in document):
            raise ValueError("a condition goes with KIND_CONDITIONAL, and only with it")
        filter_ = PlanResourcesFilter.from_dict(document)
    except (ValueError, TypeError, KeyError, RecursionError) as e:
        raise FilterError(f"malformed {header}: {e}") from None
    return PlanResourcesResponse(request_id="", action="", resource_kind="",
                                 policy_version="", filter=filter_)


def condition(headers: Mapping[str, str], table: Any, attr_map: Mapping[str, Any],
              **get_query_options: Any) -> Any:
    """The WHERE condition of the rows the caller may see: `sa.true()` for
    KIND_ALWAYS_ALLOWED, `sa.false()` for KIND_ALWAYS_DENIED, the translated condition
    otherwise. `attr_map` maps `request.resource.attr.<name>` to columns of `table`;
    options (`operator_override_fns`) go to `cerbos_sqlalchemy.get_query`. For
    conditions over joined tables, call `get_query(plan(headers), ...)` for the query."""
    from cerbos_sqlalchemy import get_query

    query = get_query(plan(headers), table, dict(attr_map), **get_query_options)
    where = query.whereclause
    return sa.true() if where is None else where
