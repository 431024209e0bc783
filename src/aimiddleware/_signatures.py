"""The constructor signature a middleware that takes ``**options`` shows its callers.

``Middleware(app, config=None, **options)`` hides its options from ``help()``, editors and
``inspect.signature``; :func:`options_signature` writes them back, keyword-only, with the
annotations and defaults of the options dataclass's fields.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["options_signature", "show_options"]


def options_signature(
    options: type, fields: Iterable[dataclasses.Field[Any]] | None = None
) -> inspect.Signature:
    """``(self, app, config=None, *, <each field>)``: ``fields`` defaults to the fields of the
    ``options`` dataclass; a field without a default is a required keyword."""
    positional, keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter("self", positional),
        inspect.Parameter("app", positional, annotation="ASGIApp"),
        inspect.Parameter(
            "config", positional, default=None, annotation=f"{options.__name__} | None"
        ),
    ]
    for field in dataclasses.fields(options) if fields is None else fields:
        if field.default is not dataclasses.MISSING:
            default: Any = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = inspect.Parameter.empty
        param = inspect.Parameter(field.name, keyword, default=default, annotation=field.type)
        params.append(param)
    return inspect.Signature(params)


def show_options(init: Callable[..., None], signature: inspect.Signature) -> None:
    """Give the constructor ``init`` the signature ``signature``."""
    init.__signature__ = signature  # type: ignore[attr-defined]
