#!/usr/bin/env python3
"""Mint a demo JWT signed with the DEV ONLY key (examples/fastapi/dev-private-key.pem).

The token matches what gatehouse.yaml accepts: RS256, kid "dev-1",
iss https://auth.example.test, aud documents-api, exp in one hour, and the claims
Gatehouse maps to the principal (sub, roles, department, clearances, approval_limit, email).

    python examples/fastapi/mint_token.py alice            # a preset (alice, bob, carol, root, bot)
    python examples/fastapi/mint_token.py --sub dave --roles user --department sales
    TOKEN=$(python examples/fastapi/mint_token.py bob)
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/documents/2

Needs PyJWT with its crypto extra (pip install -r examples/fastapi/requirements.txt).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import jwt

HERE = Path(__file__).resolve().parent
PRIVATE_KEY = HERE / "dev-private-key.pem"
KID = "dev-1"
ISSUER = "https://auth.example.test"
AUDIENCE = "documents-api"

# The principals of policies/tests/document_test.yaml.
PRESETS: dict[str, dict[str, Any]] = {
    "alice": {"sub": "alice", "roles": ["user"], "department": "engineering",
              "clearances": [], "approval_limit": 0},
    "bob": {"sub": "bob", "roles": ["manager"], "department": "engineering",
            "clearances": ["confidential"], "approval_limit": 10000},
    "carol": {"sub": "carol", "roles": ["user"], "department": "sales",
              "clearances": [], "approval_limit": 0},
    "root": {"sub": "root", "roles": ["admin"], "department": "it",
             "clearances": [], "approval_limit": 0},
    "bot": {"sub": "svc-reporting", "roles": ["user"], "department": "none",
            "clearances": [], "approval_limit": 0},
}


def claims_for(
    sub: str,
    roles: list[str],
    department: str,
    clearances: list[str] | None = None,
    approval_limit: int = 0,
    email: str | None = None,
    ttl_seconds: int = 3600,
    now: int | None = None,
) -> dict[str, Any]:
    now = int(time.time()) if now is None else now
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "roles": roles,
        "department": department,
        "clearances": clearances or [],
        "approval_limit": approval_limit,
        "email": email or f"{sub}@example.test",
    }


def sign(claims: dict[str, Any], key_pem: bytes | None = None, kid: str = KID) -> str:
    """Sign claims with RS256 (the dev key unless another PEM is given)."""
    key = key_pem if key_pem is not None else PRIVATE_KEY.read_bytes()
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def mint(preset: str, **overrides: Any) -> str:
    """A token for one of PRESETS, e.g. mint("alice") or mint("bob", ttl_seconds=60)."""
    base = dict(PRESETS[preset])
    base.update(overrides)
    return sign(claims_for(**base))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("preset", nargs="?", choices=sorted(PRESETS), help="a demo principal")
    p.add_argument("--sub")
    p.add_argument("--roles", help="comma-separated, e.g. user,manager")
    p.add_argument("--department")
    p.add_argument("--clearances", help="comma-separated, e.g. confidential")
    p.add_argument("--approval-limit", type=int)
    p.add_argument("--email")
    p.add_argument("--ttl", type=int, default=3600, help="seconds until exp (default 3600)")
    a = p.parse_args()

    base: dict[str, Any] = dict(PRESETS[a.preset]) if a.preset else {
        "sub": None, "roles": ["user"], "department": "engineering",
        "clearances": [], "approval_limit": 0,
    }
    if a.sub is not None:
        base["sub"] = a.sub
    if a.roles is not None:
        base["roles"] = [r for r in a.roles.split(",") if r]
    if a.department is not None:
        base["department"] = a.department
    if a.clearances is not None:
        base["clearances"] = [c for c in a.clearances.split(",") if c]
    if a.approval_limit is not None:
        base["approval_limit"] = a.approval_limit
    if a.email is not None:
        base["email"] = a.email
    if not base["sub"]:
        p.error("give a preset or --sub")
    print(sign(claims_for(**base, ttl_seconds=a.ttl)))


if __name__ == "__main__":
    main()
