"""Verify the identity assertion the Harness gateway sends to this upstream.

On every tool call the gateway sends ``Authorization: Bearer <assertion>``: a
short-lived JWT it signs itself (ES256) naming the human (``sub``), the agent
acting for them (``act.sub``, with earlier agents nested under ``act.act``),
the human's ``roles``, ``email`` and ``name`` and, when the agent uses a
delegation, its ``delegation_id`` and ``scope``. The agent's own token never
reaches the upstream. This module checks that assertion with PyJWT against
the gateway's public keys (``<public_url>/.well-known/jwks.json``).

Configuration (environment variables):

``HARNESS_JWKS_URL``
    The gateway's JWKS, e.g. ``http://127.0.0.1:8080/.well-known/jwks.json``.
    Unset or empty: verification is OFF and :func:`harness_caller` returns
    ``None`` (the service still runs on its own, e.g. for local development).
``HARNESS_ISSUER``
    The gateway's ``public_url`` (the ``iss`` of every assertion). Required
    when ``HARNESS_JWKS_URL`` is set.
``HARNESS_AUDIENCE``
    This upstream's name in the gateway config (the ``aud``); default ``crm``.

Use it as a dependency::

    @app.get("/whoami")
    def whoami(caller: Optional[Caller] = Depends(harness_caller)): ...

The header is read from :class:`fastapi.Request` on purpose: declaring it with
``Header(...)`` or ``Security(...)`` would add an ``authorization`` parameter
to the OpenAPI document, which the gateway would turn into a tool argument.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from dataclasses import dataclass, field
from typing import List, Optional, Tuple
from urllib.error import URLError

import jwt  # PyJWT (Debian: python3-jwt)
from fastapi import HTTPException, Request

ALGORITHMS = ["ES256"]
REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud"]
# The gateway never signs an assertion valid for longer than this.
MAX_ASSERTION_TTL = 60
# Tolerated clock difference between the gateway and this service, seconds.
LEEWAY = 5
# How long to wait for the gateway's JWKS, seconds.
JWKS_TIMEOUT = 5
# Longest actor chain read from nested act claims (the gateway allows 8).
MAX_ACTORS = 8


@dataclass(frozen=True)
class Caller:
    """The verified identity behind one request."""

    human: str
    """The human on whose behalf the call is made (``sub``)."""
    agent: Optional[str]
    """The agent making the call (``act.sub``); None when no agent is named."""
    actors: List[str] = field(default_factory=list)
    """The whole actor chain, current agent first, then earlier ones."""
    roles: List[str] = field(default_factory=list)
    email: Optional[str] = None
    delegation_id: Optional[str] = None
    """The id of the delegation the agent used, when it used one."""
    scopes: List[str] = field(default_factory=list)
    """The scopes of that delegation (``tool:<name>`` globs)."""


class _JWKClient(jwt.PyJWKClient):
    """PyJWKClient with a timeout on the JWKS request (PyJWT 2.6 has none)."""

    def fetch_data(self):  # noqa: D102 - same contract as the parent
        try:
            with urllib.request.urlopen(self.uri, timeout=JWKS_TIMEOUT) as response:
                data = json.load(response)
        except (URLError, OSError, ValueError) as e:
            raise jwt.PyJWKClientError(f'Fail to fetch data from the url, err: "{e}"') from e
        if self.jwk_set_cache is not None:
            self.jwk_set_cache.put(data)
        return data


_lock = threading.Lock()
_clients: dict = {}


def _config() -> Optional[Tuple[str, str, str]]:
    """(jwks_url, issuer, audience), or None when verification is off."""
    jwks_url = os.environ.get("HARNESS_JWKS_URL", "").strip()
    if not jwks_url:
        return None
    issuer = os.environ.get("HARNESS_ISSUER", "").strip()
    audience = os.environ.get("HARNESS_AUDIENCE", "").strip() or "crm"
    return jwks_url, issuer, audience


def verification_enabled() -> bool:
    """Whether HARNESS_JWKS_URL is set, i.e. assertions are required."""
    return _config() is not None


def _client(jwks_url: str) -> jwt.PyJWKClient:
    with _lock:
        c = _clients.get(jwks_url)
        if c is None:
            # The key set is cached (5 minutes); an unknown kid (the gateway
            # restarted with a new key) refetches it once.
            c = _JWKClient(jwks_url, cache_jwk_set=True, lifespan=300)
            _clients[jwks_url] = c
        return c


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail,
                         headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def _actor_chain(act) -> List[str]:
    chain: List[str] = []
    while act is not None:
        if not isinstance(act, dict) or not isinstance(act.get("sub"), str) or not act["sub"]:
            raise _unauthorized("invalid gateway assertion: malformed act claim")
        chain.append(act["sub"])
        if len(chain) > MAX_ACTORS:
            raise _unauthorized("invalid gateway assertion: act chain too long")
        act = act.get("act")
    return chain


def _string_list(v, what: str) -> List[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _unauthorized(f"invalid gateway assertion: {what} is not a list of strings")
    return list(v)


def verify_assertion(token: str) -> Caller:
    """Verify one assertion and return its Caller; raise HTTPException 401/503."""
    cfg = _config()
    if cfg is None:
        raise RuntimeError("HARNESS_JWKS_URL is not set")
    jwks_url, issuer, audience = cfg
    if not issuer:
        raise HTTPException(status_code=503,
                            detail="identity verification misconfigured: HARNESS_ISSUER is not set")
    try:
        key = _client(jwks_url).get_signing_key_from_jwt(token)
    except jwt.PyJWKClientError as e:
        if str(e).startswith("Fail to fetch"):
            raise HTTPException(status_code=503,
                                detail="cannot fetch the gateway's signing keys") from e
        raise _unauthorized(f"invalid gateway assertion: {e}") from e
    except jwt.PyJWTError as e:
        raise _unauthorized(f"invalid gateway assertion: {e}") from e
    try:
        claims = jwt.decode(
            token,
            key.key,
            algorithms=ALGORITHMS,
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.PyJWTError as e:
        raise _unauthorized(f"invalid gateway assertion: {e}") from e
    exp, iat = claims["exp"], claims["iat"]
    if not isinstance(iat, (int, float)) or exp - iat > MAX_ASSERTION_TTL:
        raise _unauthorized("invalid gateway assertion: lifetime longer than 60 s")
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub:
        raise _unauthorized("invalid gateway assertion: empty sub")
    actors = _actor_chain(claims.get("act"))
    scope = claims.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise _unauthorized("invalid gateway assertion: scope is not a string")
    email = claims.get("email")
    delegation_id = claims.get("delegation_id")
    return Caller(
        human=sub,
        agent=actors[0] if actors else None,
        actors=actors,
        roles=_string_list(claims.get("roles"), "roles"),
        email=email if isinstance(email, str) else None,
        delegation_id=delegation_id if isinstance(delegation_id, str) else None,
        scopes=scope.split() if scope else [],
    )


def harness_caller(request: Request) -> Optional[Caller]:
    """FastAPI dependency: the verified caller, or None when verification is off.

    With HARNESS_JWKS_URL set, a request without a valid gateway assertion
    gets 401 (503 when the gateway's keys cannot be fetched).
    """
    if _config() is None:
        return None
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized("missing gateway assertion: expected Authorization: Bearer <assertion>")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("malformed Authorization header: expected Bearer <assertion>")
    return verify_assertion(token)
