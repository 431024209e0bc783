"""The options of :class:`~aimiddleware.normalize.NormalizeMiddleware`, validated once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._config import check_int, check_text
from ..exceptions import ConfigurationError
from ._routes import NormalizeRoute

__all__ = ["NormalizeOptions"]


@dataclass(frozen=True, slots=True)
class NormalizeOptions:
    """What :class:`~aimiddleware.normalize.NormalizeMiddleware` does per route.

    >>> NormalizeOptions(routes=[NormalizeRoute("/mcp*", format="passthrough")]).routes
    (NormalizeRoute(path='/mcp*', format='passthrough', minimal=None),)

    :param routes: per-route choices, first match wins (see :class:`NormalizeRoute`); kept as
        a tuple.
    :param problem_type_base: a URI prefix for RFC 9457 ``type`` (``<base><code>``); without
        it ``type`` is ``about:blank``.
    :param max_body: the largest error (or minimal-eligible) body read to rewrite it, in bytes
        (at least 1024); larger error bodies are replaced using the status alone, larger success
        bodies are sent whole.
    """

    routes: Sequence[NormalizeRoute] = ()
    problem_type_base: str | None = None
    max_body: int = 1024 * 1024

    def __post_init__(self) -> None:
        try:
            if isinstance(self.routes, NormalizeRoute | str | bytes):
                raise TypeError
            routes: tuple[Any, ...] = tuple(self.routes)
        except TypeError:
            routes = (None,)
        if not all(isinstance(r, NormalizeRoute) for r in routes):
            raise ConfigurationError("routes must be a sequence of NormalizeRoute")
        object.__setattr__(self, "routes", routes)
        if self.problem_type_base is not None:
            check_text("problem_type_base", self.problem_type_base, empty=True)
        check_int("max_body", self.max_body, minimum=1024)

    def route_for(self, path: str) -> NormalizeRoute | None:
        """The first configured route matching ``path``."""
        for route in self.routes:
            if route.matches(path):
                return route
        return None
