"""Names, units and bucket boundaries from the OpenTelemetry semantic conventions.

Spelled out here rather than imported from ``opentelemetry-semantic-conventions``: that package
is pre-release only and not a dependency of ``opentelemetry-api``. The HTTP names are stable.
The GenAI names are those of the OpenTelemetry GenAI semantic conventions
:data:`GENAI_RELEASE` (``open-telemetry/semantic-conventions-genai``, built on semantic
conventions 1.45); :data:`PREVIOUS_RELEASE` names the semantic conventions release whose GenAI
names :data:`OPT_IN_ENV` can ask for besides (see :func:`emits_previous`).

This module is the one list of the names the middleware may emit: :data:`CURRENT` and
:data:`PREVIOUS` hold them, and :data:`SINCE` says which release defined each.
"""

from __future__ import annotations

from typing import Final

GENAI_RELEASE: Final = "0.1.0"  # open-telemetry/semantic-conventions-genai
PREVIOUS_RELEASE: Final = "1.41.0"  # open-telemetry/semantic-conventions, the last with GenAI

# the variable the contrib instrumentations read: comma-separated values, one per category
OPT_IN_ENV: Final = "OTEL_SEMCONV_STABILITY_OPT_IN"
# "<category>/dup": the previous names as well as the current ones (contrib's http/dup)
GEN_AI_DUP: Final = "gen_ai/dup"


def emits_previous(opt_in: str | None) -> bool:
    """Whether ``OTEL_SEMCONV_STABILITY_OPT_IN`` asks for the previous GenAI names too.

    Read as the contrib instrumentations read it: values separated by commas, blanks
    ignored; ``gen_ai/dup`` emits both the previous and the current names. Every other value
    (``gen_ai_latest_experimental`` included) leaves the current names alone.

    >>> emits_previous("http, gen_ai/dup")
    True
    >>> emits_previous("gen_ai_latest_experimental") or emits_previous(None)
    False
    """
    if not opt_in:
        return False
    return any(value.strip() == GEN_AI_DUP for value in opt_in.split(","))


# -- HTTP (stable) ---------------------------------------------------------------------------
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_REQUEST_METHOD_ORIGINAL: Final = "http.request.method_original"
HTTP_ROUTE: Final = "http.route"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
URL_SCHEME: Final = "url.scheme"
URL_PATH: Final = "url.path"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
CLIENT_ADDRESS: Final = "client.address"
USER_AGENT_ORIGINAL: Final = "user_agent.original"
NETWORK_PROTOCOL_VERSION: Final = "network.protocol.version"
ERROR_TYPE: Final = "error.type"

# -- GenAI (development) ---------------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"  # previous only
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
OPENAI_API_TYPE: Final = "openai.api.type"  # "responses" tells the Responses API's chats apart

# -- metrics: (name, unit, description, explicit bucket boundaries) ---------------------------
HTTP_SERVER_REQUEST_DURATION: Final = (
    "http.server.request.duration",
    "s",
    "Duration of HTTP server requests.",
    (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
)
GEN_AI_SERVER_REQUEST_DURATION: Final = (
    "gen_ai.server.request.duration",
    "s",
    "Generative AI server request duration such as time-to-last byte or last output token.",
    (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92),
)
GEN_AI_SERVER_TIME_TO_FIRST_TOKEN: Final = (
    "gen_ai.server.time_to_first_token",
    "s",
    "Time to generate first token for successful responses.",
    (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
)
GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN: Final = (
    "gen_ai.server.time_per_output_token",
    "s",
    "Time per output token generated after the first token for successful responses.",
    (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5),
)
TOKEN_BUCKETS: Final = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
# The conventions define token metrics for clients only (none for a model server): the
# per-operation histograms that replaced gen_ai.client.token.usage are recorded, so that the
# dashboards built on them work for the server too.
GEN_AI_INPUT_TOKENS: Final = (
    "gen_ai.client.inference.operation.input_tokens",
    "{token}",
    "The number of input (prompt) tokens used per inference operation.",
    TOKEN_BUCKETS,
)
GEN_AI_OUTPUT_TOKENS: Final = (
    "gen_ai.client.inference.operation.output_tokens",
    "{token}",
    "The number of output (completion) tokens used per inference operation.",
    TOKEN_BUCKETS,
)
# previous: one histogram for both directions, told apart by gen_ai.token.type
GEN_AI_TOKEN_USAGE: Final = (
    "gen_ai.client.token.usage",
    "{token}",
    "Number of input and output tokens used.",
    TOKEN_BUCKETS,
)

# the methods the HTTP conventions know; anything else is reported as _OTHER
KNOWN_METHODS: Final = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "QUERY"}
)

# names the middleware defines itself live under "aimiddleware."; these are the conventions'
HTTP_SINCE: Final = "semconv 1.23.0 (stable)"
# name -> the release that defined it, for every current name
_CURRENT_SINCE: Final = {
    **dict.fromkeys(
        (
            HTTP_REQUEST_METHOD,
            HTTP_REQUEST_METHOD_ORIGINAL,
            HTTP_ROUTE,
            HTTP_RESPONSE_STATUS_CODE,
            URL_SCHEME,
            URL_PATH,
            SERVER_ADDRESS,
            SERVER_PORT,
            CLIENT_ADDRESS,
            USER_AGENT_ORIGINAL,
            NETWORK_PROTOCOL_VERSION,
            ERROR_TYPE,
            HTTP_SERVER_REQUEST_DURATION[0],
        ),
        HTTP_SINCE,
    ),
    **dict.fromkeys(
        (
            GEN_AI_REQUEST_MODEL,
            GEN_AI_REQUEST_MAX_TOKENS,
            GEN_AI_REQUEST_TEMPERATURE,
            GEN_AI_REQUEST_TOP_P,
            GEN_AI_RESPONSE_ID,
            GEN_AI_RESPONSE_MODEL,
            GEN_AI_RESPONSE_FINISH_REASONS,
        ),
        "semconv 1.26.0",
    ),
    **dict.fromkeys(
        (
            GEN_AI_OPERATION_NAME,
            GEN_AI_USAGE_INPUT_TOKENS,
            GEN_AI_USAGE_OUTPUT_TOKENS,
            GEN_AI_SERVER_REQUEST_DURATION[0],
            GEN_AI_SERVER_TIME_TO_FIRST_TOKEN[0],
            GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN[0],
        ),
        "semconv 1.27.0",
    ),
    **dict.fromkeys(
        (GEN_AI_PROVIDER_NAME, GEN_AI_INPUT_MESSAGES, GEN_AI_OUTPUT_MESSAGES), "semconv 1.37.0"
    ),
    **dict.fromkeys((GEN_AI_REQUEST_STREAM, GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK), "semconv 1.41.0"),
    **dict.fromkeys((GEN_AI_INPUT_TOKENS[0], GEN_AI_OUTPUT_TOKENS[0]), f"genai {GENAI_RELEASE}"),
}
# the previous names the current release removed: emitted with gen_ai/dup only
_PREVIOUS_ONLY: Final = {
    GEN_AI_TOKEN_USAGE[0]: "semconv 1.27.0",
    GEN_AI_TOKEN_TYPE: "semconv 1.27.0",
}
_ADDED_BY_CURRENT: Final = frozenset((GEN_AI_INPUT_TOKENS[0], GEN_AI_OUTPUT_TOKENS[0]))

SINCE: Final = {**_CURRENT_SINCE, **_PREVIOUS_ONLY}
CURRENT: Final = frozenset(_CURRENT_SINCE)
PREVIOUS: Final = (CURRENT - _ADDED_BY_CURRENT) | frozenset(_PREVIOUS_ONLY)
