"""The reference OpenAI-compatible server: SmolLM2 through llama-cpp-python behind aimiddleware.

Run it with ``python -m reference_app serve`` (or ``make demo``).
"""

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
