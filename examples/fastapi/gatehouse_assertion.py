"""Verify Gatehouse's signed assertion (the "wristband") on every request.

With `extAuthz.assertion` configured, Gatehouse adds `x-gatehouse-assertion` to each
request it allows: a short-lived Ed25519 JWT naming the principal, roles, decision id and
the request's method and path, signed with a key whose JWKS Gatehouse serves at
`GET /_gatehouse/jwks.json`. An app that checks it refuses what did not pass through
Gatehouse: forged `x-gatehouse-*` headers sent straight to the app's port, and a captured
assertion replayed for another method or path.

    verifier = AssertionVerifier.from_env()    # None unless GATEHOUSE_ASSERTION_JWKS_URL is set
    claims = verifier.verify(request.method, request.url.path, request.headers)

Environment: GATEHOUSE_ASSERTION_JWKS_URL (required to turn checking on),
GATEHOUSE_ASSERTION_AUDIENCE (default documents-api), GATEHOUSE_ASSERTION_ISSUER
(default gatehouse). Needs PyJWT with its crypto extra.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import jwt

ASSERTION = "x-gatehouse-assertion"
PRINCIPAL = "x-gatehouse-principal"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "jti", "iat", "exp", "method", "path"]


class AssertionInvalid(Exception):
    """The request carries no valid assertion for itself."""


class AssertionVerifier:
    """Checks assertions against Gatehouse's JWKS (fetched once, then cached)."""

    def __init__(self, jwks_url: str, audience: str, issuer: str = "gatehouse",
                 leeway_seconds: int = 5) -> None:
        self._keys = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=2)
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway_seconds

    @classmethod
    def from_env(cls) -> AssertionVerifier | None:
        url = os.environ.get("GATEHOUSE_ASSERTION_JWKS_URL")
        if not url:
            return None
        return cls(
            url,
            audience=os.environ.get("GATEHOUSE_ASSERTION_AUDIENCE", "documents-api"),
            issuer=os.environ.get("GATEHOUSE_ASSERTION_ISSUER", "gatehouse"),
        )

    def verify(self, method: str, path: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """The assertion's claims; raises AssertionInvalid unless it is valid for exactly
        this method and path and names the principal in `x-gatehouse-principal`."""
        token = headers.get(ASSERTION)
        if not token:
            raise AssertionInvalid("missing x-gatehouse-assertion")
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token, key.key, algorithms=["EdDSA"], audience=self._audience,
                issuer=self._issuer, leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as e:
            raise AssertionInvalid(f"invalid x-gatehouse-assertion: {e}") from None
        if claims["method"] != method or claims["path"] != path:
            raise AssertionInvalid("x-gatehouse-assertion was issued for another request")
        principal = headers.get(PRINCIPAL)
        if principal is None or unquote(principal) != claims["sub"]:
            raise AssertionInvalid("x-gatehouse-assertion names another principal")
        return claims
