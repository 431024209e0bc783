"""Streamed generation through the reference app against llama-cpp-python, in one run.

    python -m benchmarks.streaming --rounds 3 --max-tokens 128

Interleaves, on the same model, prompt and sampling settings:
  in-process   llama-cpp-python generating in this process (the ceiling)
  llama-server llama-cpp-python's own server (python -m llama_cpp.server), openai SDK streaming
  reference    this project's reference app (python -m reference_app serve), openai SDK streaming,
               with the stack reference_app/stack.py mounts, OAuth on and a token minted for the
               run (--no-auth: OAuth off)
and then aggregate tokens/s of 4 concurrent streams through the reference app with 1 and 2
instances. Time to first token (TTFT) is measured from the request to the first content delta;
decode tokens/s over the tokens after the first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai

from reference_app.engine import bundled_model_path
from testkit.processes import ServerProcess, serving_process
from testkit.servers import bound_socket, port_of

from .apps import missing
from .configs_stack import STACK_MODULES
from .machine import describe

MODEL_ID = "SmolLM2-135M-Instruct"
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
RESULTS = Path(__file__).parent / "results"
# the reference app answers /v1/models at once and /health (200) once its models have loaded
REFERENCE_READY = "/health"


@dataclass
class Sample:
    ttft_ms: float
    tokens: int
    decode_tps: float  # tokens after the first, per second
    total_s: float


def _sample(started: float, stamps: list[float]) -> Sample:
    first, last = stamps[0], stamps[-1]
    decode = (len(stamps) - 1) / (last - first) if len(stamps) > 1 and last > first else 0.0
    return Sample((first - started) * 1000, len(stamps), decode, last - started)


def in_process(max_tokens: int) -> Callable[[], Sample]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(bundled_model_path()), n_ctx=2048, verbose=False)
    prompt = f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n"
    tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)

    def run() -> Sample:
        started = time.perf_counter()
        stream = llm.create_completion(
            tokens, max_tokens=max_tokens, temperature=0, seed=1, stop=["<|im_end|>"], stream=True
        )
        stamps = [time.perf_counter() for chunk in stream if chunk["choices"][0]["text"]]
        return _sample(started, stamps)

    return run


def over_http(
    base_url: str, model: str, max_tokens: int, api_key: str = "none"
) -> Callable[[], Sample]:
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)

    def run() -> Sample:
        started = time.perf_counter()
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=max_tokens,
            temperature=0,
            seed=1,
            stream=True,
        )
        stamps = [
            time.perf_counter()
            for chunk in stream
            if chunk.choices and chunk.choices[0].delta.content
        ]
        return _sample(started, stamps)

    return run


@contextlib.contextmanager
def server(
    command: list[str],
    sock: socket.socket,
    env: dict[str, str] | None = None,
    api_key: str | None = None,
    ready: str = "/v1/models",
) -> Iterator[str]:
    """Run ``command --fd N`` on ``sock`` until the block ends; yield its base URL once
    ``ready`` answers 200."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def answered(process: ServerProcess) -> bool:
        return httpx.get(f"{process.url}{ready}", headers=headers, timeout=2).status_code == 200

    # auth off unless the caller turns it on (reference_auth) with a token to probe with
    environment = {**os.environ, "AIMW_AUTH": "0", **(env or {})}
    with serving_process(
        command, env=environment, ready=answered, timeout=120, stop_timeout=20, sock=sock
    ) as process:
        yield f"{process.url}/v1"


def reference_command(instances: int = 1) -> list[str]:
    return [sys.executable, "-m", "reference_app", "serve", "--instances", str(instances)]


def llama_server_command() -> tuple[list[str], dict[str, str]]:
    """llama-cpp-python's own server app (what ``python -m llama_cpp.server`` serves), under
    uvicorn on an inherited socket; its settings come from the environment."""
    app = "llama_cpp.server.app:create_app"
    command = [sys.executable, "-m", "testkit.serve", app, "--factory"]
    env = {"MODEL": str(bundled_model_path()), "N_CTX": "2048", "MODEL_ALIAS": MODEL_ID}
    return command, env


@contextlib.contextmanager
def reference_auth(port: int, enabled: bool) -> Iterator[tuple[dict[str, str], str]]:
    """The environment that turns the reference app's OAuth on, and a token it accepts.

    The development issuer's key lives in a temporary file for the run; the token carries the
    scopes the benchmark uses. With ``enabled`` false: auth off and a placeholder key.
    """
    if not enabled:
        yield {"AIMW_AUTH": "0"}, "none"
        return
    from reference_app.auth import mint
    from reference_app.settings import Settings

    with tempfile.TemporaryDirectory(prefix="aimw-bench-auth-") as workdir:
        key_file = str(Path(workdir) / "issuer-key.json")
        env = {"AIMW_AUTH": "1", "AIMW_AUTH_KEY_FILE": key_file}
        settings = Settings(port=port, auth_key_file=key_file)  # type: ignore[call-arg]
        # the agent tier: 8 streams in flight (the human tier's 2 would turn the concurrent
        # measurement into 429s)
        yield env, mint(settings, scope="chat models:read", tier="agent", ttl=6 * 3600)


def concurrent(base_url: str, streams: int, max_tokens: int, api_key: str = "none") -> float:
    """Aggregate delivered tokens/s of ``streams`` simultaneous streams.

    :raises RuntimeError: a stream failed (a figure over fewer streams would flatter the server).
    """
    results: list[Sample] = []
    failures: list[BaseException] = []
    runner = over_http(base_url, MODEL_ID, max_tokens, api_key)

    def one() -> None:
        try:
            results.append(runner())
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=one) for _ in range(streams)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{len(failures)} of {streams} streams failed: {failures[0]!r}")
    return sum(r.tokens for r in results) / (time.perf_counter() - started)


def summarize(samples: list[Sample]) -> dict[str, float]:
    return {
        "ttft_p50_ms": statistics.median(s.ttft_ms for s in samples),
        "decode_tps": statistics.median(s.decode_tps for s in samples),
        "tokens": statistics.median(s.tokens for s in samples),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.streaming",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--skip-concurrency", action="store_true")
    parser.add_argument("--out", type=Path, help="where to write the JSON results")
    parser.add_argument(
        "--no-auth", action="store_true", help="the reference app with OAuth off (AIMW_AUTH=0)"
    )
    args = parser.parse_args(argv)

    samples: dict[str, list[Sample]] = {"in-process": [], "llama-server": [], "reference": []}
    llama_command, llama_env = llama_server_command()
    with (
        bound_socket() as ref_socket,
        reference_auth(port_of(ref_socket), not args.no_auth) as (auth_env, token),
        server(reference_command(), ref_socket, auth_env, token, REFERENCE_READY) as ref_url,
        server(llama_command, bound_socket(), llama_env) as llama_url,
    ):
        runners = {
            "in-process": in_process(args.max_tokens),
            "llama-server": over_http(llama_url, MODEL_ID, args.max_tokens),
            "reference": over_http(ref_url, MODEL_ID, args.max_tokens, token),
        }
        for runner in runners.values():  # warm up each once
            runner()
        for round_no in range(1, args.rounds + 1):
            for name, runner in runners.items():
                sample = runner()
                samples[name].append(sample)
                print(
                    f"round {round_no} {name:13} ttft {sample.ttft_ms:7.1f} ms  "
                    f"{sample.decode_tps:6.1f} tok/s  ({sample.tokens} tokens)",
                    flush=True,
                )
    summary = {name: summarize(s) for name, s in samples.items()}
    base = summary["in-process"]
    server_tps = summary["llama-server"]["decode_tps"]
    print(f"\n{'path':13} {'TTFT p50':>9} {'+ms vs a':>9} {'tok/s':>7}", end="")
    print(f" {'x in-proc':>9} {'x llama-srv':>11}")
    for name, row in summary.items():
        print(
            f"{name:13} {row['ttft_p50_ms']:8.1f}ms "
            f"{row['ttft_p50_ms'] - base['ttft_p50_ms']:8.1f}ms "
            f"{row['decode_tps']:7.1f} {row['decode_tps'] / base['decode_tps']:9.2f} "
            f"{row['decode_tps'] / server_tps:11.2f}"
        )
    settings = {k: v for k, v in vars(args).items() if k not in {"out", "no_auth"}}
    report: dict[str, object] = {
        "kind": "streaming",
        "machine": describe(),
        "settings": settings,
        "summary": summary,
        # whether the reference app could mount the library's middlewares in this tree
        "middlewares": missing(STACK_MODULES) or "importable",
        "auth": not args.no_auth,
    }
    if not args.skip_concurrency:
        aggregate = {}
        for instances in (1, 2):
            with (
                bound_socket() as sock,
                reference_auth(port_of(sock), not args.no_auth) as (auth_env, token),
                server(reference_command(instances), sock, auth_env, token, REFERENCE_READY) as url,
            ):
                over_http(url, MODEL_ID, 8, token)()
                aggregate[f"instances={instances}"] = concurrent(url, 4, args.max_tokens, token)
            print(
                f"4 concurrent streams, --instances {instances}: "
                f"{aggregate[f'instances={instances}']:.1f} tok/s aggregate",
                flush=True,
            )
        report["concurrent_4_streams_tps"] = aggregate
    out = args.out or RESULTS / f"streaming-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"written {out}")
    return report


if __name__ == "__main__":
    main()
