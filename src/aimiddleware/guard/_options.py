"""The options of :class:`~aimiddleware.guard.RequestGuardMiddleware`, validated once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .._config import check_int, check_seconds, check_text

__all__ = ["RENAMED", "GuardOptions"]

#: old option name -> new one (the old one still works, and warns once)
RENAMED: Final = {"max_body_bytes": "max_request_bytes"}


@dataclass(frozen=True, slots=True)
class GuardOptions:
    """The limits of :class:`~aimiddleware.guard.RequestGuardMiddleware`; ``None`` turns one off.

    >>> GuardOptions(max_request_bytes=1 << 20, body_timeout=30).body_timeout
    30.0

    :param max_request_bytes: largest request body, in bytes (``max_body_bytes`` before).
    :param body_timeout: seconds allowed for the whole body, from the first read.
    :param max_header_bytes: largest total size of the request's header names and values.
    :param problem_type_base: a URI prefix for the RFC 9457 ``type`` (``<base><code>``).
    """

    max_request_bytes: int | None = 8 * 1024 * 1024
    body_timeout: float | None = 60.0
    max_header_bytes: int | None = 64 * 1024
    problem_type_base: str | None = None

    def __post_init__(self) -> None:
        if self.max_request_bytes is not None:
            check_int("max_request_bytes", self.max_request_bytes, minimum=1)
        if self.max_header_bytes is not None:
            check_int("max_header_bytes", self.max_header_bytes, minimum=1024)
        if self.body_timeout is not None:
            timeout = check_seconds("body_timeout", self.body_timeout)
            object.__setattr__(self, "body_timeout", float(timeout))
        if self.problem_type_base is not None:
            check_text("problem_type_base", self.problem_type_base, empty=True)
