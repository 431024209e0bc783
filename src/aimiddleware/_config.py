"""Configuration: one set of validators, and the way every middleware takes its options.

Each middleware's options are a frozen dataclass validated in ``__post_init__`` with the checks
below; its constructor takes the options as keywords or as that object (:func:`build_options`),
and the per-request object reads the config, never the middleware. A renamed option keeps its
old name as an alias that warns once (:func:`rename_options`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any, Final, TypeVar

from .exceptions import ConfigurationError

__all__ = [
    "build_options",
    "check_bool",
    "check_choice",
    "check_int",
    "check_number",
    "check_seconds",
    "check_text",
    "group_options",
    "rename_options",
]

T = TypeVar("T")

_WARNED: set[tuple[str, str]] = set()
_MISSING: Final = object()


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> float:
    """``value`` as a finite number in range (``minimum <= value <= maximum``, ``value > above``),
    else a :class:`ConfigurationError` naming the option.

    >>> check_number("timeout", 2, above=0)
    2
    >>> check_number("timeout", 0, above=0)
    Traceback (most recent call last):
    aimiddleware.exceptions.ConfigurationError: timeout must be a number > 0, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    if above is not None and not value > above:
        raise ConfigurationError(f"{name} must be a number > {above:g}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigurationError(f"{name} must be a number >= {minimum:g}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigurationError(f"{name} must be a number <= {maximum:g}, got {value!r}")
    return value


def check_seconds(
    name: str, value: Any, *, zero: bool = False, maximum: float | None = None
) -> float:
    """A duration in seconds: ``> 0`` (``>= 0`` with ``zero=True``)."""
    if zero:
        return check_number(name, value, minimum=0, maximum=maximum)
    return check_number(name, value, above=0, maximum=maximum)


def check_int(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """An ``int`` (never a ``bool``) in ``[minimum, maximum]``.

    >>> check_int("max_keys", 0, minimum=1)
    Traceback (most recent call last):
    aimiddleware.exceptions.ConfigurationError: max_keys must be an integer >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigurationError(f"{name} must be an integer <= {maximum}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """A ``bool`` (``0`` and ``"yes"`` are refused: a typo should not pass silently)."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(name: str, value: T, choices: Iterable[T]) -> T:
    """One of ``choices``.

    >>> check_choice("on_store_error", "closed", ("open", "closed"))
    'closed'
    """
    allowed = tuple(choices)
    if value not in allowed:
        shown = ", ".join(repr(c) for c in allowed)
        raise ConfigurationError(f"{name} must be one of {shown}, got {value!r}")
    return value


def check_text(name: str, value: Any, *, empty: bool = False, one_line: bool = True) -> str:
    """A ``str`` (non-empty unless ``empty``; one line unless ``one_line=False``)."""
    if not isinstance(value, str) or (not empty and not value):
        raise ConfigurationError(f"{name} must be a {'' if empty else 'non-empty '}string")
    if one_line and ("\n" in value or "\r" in value):
        raise ConfigurationError(f"{name} must be one line of text")
    return value


def rename_options(
    owner: str, options: dict[str, Any], renamed: Mapping[str, str], *, stacklevel: int = 3
) -> dict[str, Any]:
    """Move options given under an old name (``renamed``: old -> new) to the new one, warning
    once per process and name with a :class:`DeprecationWarning`. Both names at once is an
    error. Returns ``options`` (changed in place).
    """
    for old, new in renamed.items():
        if old not in options:
            continue
        if new in options:
            raise ConfigurationError(f"{owner}: {old} is the old name of {new}; give only {new}")
        options[new] = options.pop(old)
        if (owner, old) not in _WARNED:
            _WARNED.add((owner, old))
            warnings.warn(
                f"{owner}({old}=...) is deprecated; use {new}=...",
                DeprecationWarning,
                stacklevel=stacklevel,
            )
    return options


def group_options(
    owner: str, options: dict[str, Any], groups: Mapping[str, type[Any]]
) -> dict[str, Any]:
    """Gather the keywords of each group (``groups``: the options field -> its dataclass) into
    the group's object; the other keywords stay as they are. A group given whole together with
    one of its own keywords is an error. Returns ``options`` (changed in place).
    """
    for group, kind in groups.items():
        given = {f.name: options.pop(f.name) for f in fields(kind) if f.name in options}
        if not given:
            continue
        if group in options:
            names = ", ".join(sorted(given))
            raise ConfigurationError(
                f"{owner}: {names} belong to {group}=; give them there or as keywords, not both"
            )
        options[group] = kind(**given)
    return options


def build_options(
    owner: str,
    cls: type[T],
    config: T | None,
    options: dict[str, Any],
    renamed: Mapping[str, str] | None = None,
    groups: Mapping[str, type[Any]] | None = None,
) -> T:
    """The options object a middleware runs on: ``config`` as given, or ``cls(**options)``,
    the keywords of a group gathered into it first (:func:`group_options`).

    Giving both is an error: one place says what the middleware does.
    """
    if renamed:
        # the warning points at the line that built the middleware: past this function and the
        # middleware's __init__
        rename_options(owner, options, renamed, stacklevel=4)
    if groups:
        group_options(owner, options, groups)
    if config is not None:
        if options:
            names = ", ".join(sorted(options))
            raise ConfigurationError(f"{owner}: pass config= or options, not both ({names})")
        if not isinstance(config, cls):
            raise ConfigurationError(f"{owner}: config must be a {cls.__name__}")
        return config
    return cls(**options)  # an unknown option is a TypeError, as for any call
