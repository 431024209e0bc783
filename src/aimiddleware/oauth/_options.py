"""Validation of the middleware's options, done once at start-up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from ..exceptions import ConfigurationError
from ._errors import check_scope_token
from ._jwt import ASYMMETRIC_ALGORITHMS

__all__ = ["check_algorithms", "check_scopes", "check_url", "positive"]


def check_url(name: str, value: Any, *, allow_http: bool = True) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a URL string, got {type(value).__name__}")
    parts = urlsplit(value)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.netloc or parts.fragment:
        raise ConfigurationError(f"{name} must be an absolute http(s) URL without fragment")
    return value


def check_algorithms(algorithms: Sequence[str]) -> frozenset[str]:
    if isinstance(algorithms, str):
        raise ConfigurationError("algorithms must be a list of names, not a string")
    algs = frozenset(algorithms)
    refused = sorted(a for a in algs if a not in ASYMMETRIC_ALGORITHMS)
    if not algs or refused:
        # HMAC would need a shared secret with the issuer, "none" no key at all: neither is a
        # resource server's business
        raise ConfigurationError(
            f"algorithms must be asymmetric JWS algorithms; refused: {refused or 'empty list'}"
        )
    return algs


def check_scopes(name: str, scopes: Sequence[str] | str) -> tuple[str, ...]:
    values = (scopes,) if isinstance(scopes, str) else tuple(scopes)
    out = tuple(dict.fromkeys(s for part in values for s in part.split()))
    for scope in out:
        if not check_scope_token(scope):
            raise ConfigurationError(f"invalid scope {scope!r} in {name}")
    return out


def positive(name: str, value: float, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number")
    if value < 0 or (value == 0 and not zero):
        raise ConfigurationError(f"{name} must be {'>= 0' if zero else '> 0'}, got {value}")
    return float(value)
