"""The reference OpenAI-compatible server: SmolLM2 through llama-cpp-python behind aimiddleware.

Run it with ``python -m reference_app serve`` (or ``make demo``); the chat playground is at ``/``.
"""

from .app import create_app
from .playground import DemoToken, DemoTokenIssuer
from .settings import Settings

__all__ = ["DemoToken", "DemoTokenIssuer", "Settings", "create_app"]
