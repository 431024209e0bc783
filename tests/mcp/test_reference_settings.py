"""The reference app's MCP settings are validated when the app is built, not per request."""

from __future__ import annotations

import pytest

from aimiddleware import ConfigurationError
from reference_app import Settings, create_app


@pytest.mark.parametrize(
    "settings",
    [
        {"mcp_allowed_origins": ["*"]},
        {"mcp_allowed_origins": ["chat.example.com"]},
        {"mcp_resource_metadata": "/.well-known/oauth-protected-resource"},
    ],
)
def test_bad_mcp_settings_fail_at_start_up(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        create_app(Settings(auth=False, **settings))  # type: ignore[arg-type]


def test_the_origins_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMW_MCP_ALLOWED_ORIGINS", '["https://chat.example.com"]')
    assert Settings().mcp_allowed_origins == ["https://chat.example.com"]
