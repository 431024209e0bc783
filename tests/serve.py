"""``python -m tests.serve MODULE:APP --fd N [--workers N] [--factory]``: the same as
``python -m testkit.serve`` (uvicorn on an inherited socket), under the name the tests use."""

from __future__ import annotations

from testkit.serve import main

if __name__ == "__main__":
    main()
