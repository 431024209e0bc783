"""Headless Chromium for the playground tests: Debian's ``chromium`` driven by Playwright.

Playwright never downloads a browser here: it launches the system binary by path, with a fresh
profile per test. ``make test`` installs the package when it is missing and the user is root.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, Request

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """The system Chromium; a clear failure (not a skip) when it is not installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "Chromium is not installed: the playground tests drive Debian's chromium package. "
        "Install it with `apt-get install chromium` (as root, `make test` does it for you).",
        pytrace=False,
    )


@dataclass
class Traffic:
    """Every request the page made, and the chat completion and Responses API requests
    among them."""

    urls: list[str] = field(default_factory=list)
    chats: list[Request] = field(default_factory=list)
    responses: list[Request] = field(default_factory=list)

    def record(self, request: Request) -> None:
        self.urls.append(request.url)
        if request.url.endswith("/v1/chat/completions"):
            self.chats.append(request)
        elif request.url.endswith("/v1/responses"):
            self.responses.append(request)

    def chat_body(self, index: int = -1) -> Any:
        return self.chats[index].post_data_json


@dataclass
class Playground:
    page: Page
    traffic: Traffic
    errors: list[str]

    def open(self, url: str) -> None:
        self.page.goto(url + "/")
        # the send button is enabled once /health reports the model ready
        self.page.wait_for_selector("#send:not([disabled])", timeout=30_000)

    def settings(self, *, max_tokens: int, temperature: float = 0.7) -> None:
        self.page.fill("#max-tokens", str(max_tokens))
        self.page.fill("#temperature", str(temperature))

    def use_api(self, api: str) -> None:
        """Switch the page to ``"chat"`` (Chat Completions) or ``"responses"``."""
        self.page.select_option("#api", api)

    def send(self, text: str, *, key: str | None = None) -> int:
        """Type ``text`` and click Send (or press ``key`` in the text box); returns how many
        answers there were before it."""
        before = self.page.locator(".turn.assistant").count()
        self.page.fill("#prompt", text)
        if key is None:
            self.page.click("#send")
        else:
            self.page.press("#prompt", key)
        return before

    def watch(self, before: int) -> dict[str, Any]:
        """Poll the DOM while the answer streams: ``{"lengths": [...], "status": ...}``."""
        result: dict[str, Any] = self.page.evaluate(WATCH_STREAM, before)
        return result

    def last_answer(self) -> Any:
        return self.page.locator(".turn.assistant").last

    def fact(self, element_id: str) -> str:
        return self.page.inner_text(f"#{element_id}")

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


# Samples the newest answer's text every 10 ms from inside the page until it stops streaming
# (given how many answers there were before the send): the lengths it had, in order, and how
# it ended.
WATCH_STREAM = """
async (before) => {
  const lengths = [];
  const deadline = performance.now() + 120000;
  for (;;) {
    const turns = document.querySelectorAll(".turn.assistant");
    if (turns.length > before) {
      const turn = turns[turns.length - 1];
      const length = turn.querySelector(".content").textContent.length;
      if (lengths.at(-1) !== length) lengths.push(length);
      if (turn.dataset.status !== "streaming") return { lengths, status: turn.dataset.status };
    }
    if (performance.now() > deadline) return { lengths, status: "timeout" };
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
"""


@contextmanager
def playground_page(playwright: Playwright, profile: Path) -> Iterator[Playground]:
    """A fresh Chromium profile with one page, its requests and script errors recorded."""
    context: BrowserContext = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=chromium_path(),
        args=CHROMIUM_ARGS,
        headless=True,
        viewport={"width": 1280, "height": 820},
    )
    try:
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(30_000)
        traffic = Traffic()
        errors: list[str] = []
        page.on("request", traffic.record)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield Playground(page, traffic, errors)
    finally:
        context.close()
