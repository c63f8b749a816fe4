"""The caller as Gatehouse described it, for FastAPI: a `Depends()` and a typed principal.

Gatehouse (behind Envoy, Istio or a forward-auth proxy) decides each request before the app
sees it and adds headers naming the caller. This module reads them back:

    from gatehouse_fastapi import Gatehouse, GatehousePrincipal

    gatehouse = Gatehouse()                    # refuses requests without the headers (401)

    @app.get("/documents/{doc_id}")
    def read(doc_id: str, who: Annotated[GatehousePrincipal, Depends(gatehouse)]):
        if "admin" in who.roles: ...

Headers (prefix `x-gatehouse-` unless Gatehouse's `extAuthz.headerPrefix` says otherwise):

    principal      the principal id, percent-encoded (UTF-8): `zo%C3%AB` is `zoë`
    roles          roles, each percent-encoded, joined with `,`: `admin%2Cviewer` is ONE role
    principal-attr the principal's attributes, JSON (non-ASCII as \\uXXXX escapes)
    derived-roles  derived roles that applied, joined with `,`
    outputs        the matched rules' outputs, a JSON list of {src, action, val | error}
    decision-id    the decision's id in Gatehouse's audit log

`Gatehouse(required=True)` (the default) answers 401 when the principal header is missing
or any header is malformed: defence in depth when someone reaches the app without going
through the proxy. The proxy must strip client-sent copies of these headers (Gatehouse's
Envoy configuration does); pair this with `gatehouse_assertion.py` to also refuse forged
headers sent straight to the app's port. `Gatehouse(required=False)` gives `None` instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from fastapi import HTTPException, Request

DEFAULT_PREFIX = "x-gatehouse-"
MISSING = "missing {header}: request did not pass through Gatehouse"


class MalformedHeader(ValueError):
    """A Gatehouse header that Gatehouse cannot have written."""


@dataclass(frozen=True)
class GatehousePrincipal:
    """Who Gatehouse allowed, with what it found out deciding."""

    id: str
    roles: tuple[str, ...] = ()
    attr: dict[str, Any] = field(default_factory=dict)
    derived_roles: tuple[str, ...] = ()
    outputs: list[dict[str, Any]] = field(default_factory=list)
    decision_id: str | None = None

    def has_role(self, role: str) -> bool:
        """Whether `role` is one of the principal's roles or the derived roles that applied."""
        return role in self.roles or role in self.derived_roles

    def output(self, src: str) -> Any:
        """The value of the output the rule `src` produced (None if none or failed)."""
        for o in self.outputs:
            if o.get("src") == src:
                return o.get("val")
        return None


def decode_name(value: str) -> str:
    """One percent-encoded name (UTF-8); refuses invalid escapes and control characters."""
    if "%" in value:
        for i in range(len(value)):
            if value[i] == "%" and not _is_hex(value[i + 1:i + 3]):
                raise MalformedHeader(f"bad percent escape in {value!r}")
    try:
        name = unquote(value, errors="strict")
    except UnicodeDecodeError as e:
        raise MalformedHeader(f"not UTF-8: {value!r}") from e
    if not name or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise MalformedHeader(f"empty name or control character in {value!r}")
    return name


def decode_list(value: str | None) -> tuple[str, ...]:
    """A `,`-joined list of percent-encoded names: split on `,` first, then decode each."""
    if not value:
        return ()
    return tuple(decode_name(part.strip()) for part in value.split(","))


def decode_json(value: str | None, want: type) -> Any:
    """A JSON header of type `want` (an absent header is an empty one)."""
    if not value:
        return want()
    try:
        parsed = json.loads(value)
    except ValueError as e:
        raise MalformedHeader(f"not JSON: {e}") from e
    if not isinstance(parsed, want):
        raise MalformedHeader(f"expected a JSON {want.__name__}")
    return parsed


def _is_hex(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789abcdefABCDEF" for c in s)


class Gatehouse:
    """A FastAPI dependency giving the request's `GatehousePrincipal`."""

    def __init__(self, *, required: bool = True, prefix: str = DEFAULT_PREFIX) -> None:
        self.required = required
        self.prefix = prefix.lower()

    def principal(self, headers: Any) -> GatehousePrincipal | None:
        """Reads the headers (any mapping with `.get`); None without a principal header.
        Raises MalformedHeader for a header Gatehouse cannot have written."""
        p = self.prefix
        raw = headers.get(f"{p}principal")
        if not raw:
            return None
        return GatehousePrincipal(
            id=decode_name(raw),
            roles=decode_list(headers.get(f"{p}roles")),
            attr=decode_json(headers.get(f"{p}principal-attr"), dict),
            derived_roles=decode_list(headers.get(f"{p}derived-roles")),
            outputs=decode_json(headers.get(f"{p}outputs"), list),
            decision_id=headers.get(f"{p}decision-id") or None,
        )

    def __call__(self, request: Request) -> GatehousePrincipal | None:
        try:
            who = self.principal(request.headers)
        except MalformedHeader as e:
            # Gatehouse writes these headers; a malformed one did not come from it.
            raise HTTPException(status_code=401, detail=f"malformed Gatehouse header: {e}") from e
        if who is None and self.required:
            raise HTTPException(status_code=401, detail=MISSING.format(header=f"{self.prefix}principal"))
        return who
