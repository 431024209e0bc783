// The playground: streams chat completions (or, switched, the Responses API) from this server
// and shows what the middlewares said about the last response. No framework and no build
// step; model output is only ever inserted as text, never as HTML.

import { inspect, resetInspector, setText } from "./inspector.js";
import { APIS } from "./responses.js";
import { events } from "./sse.js";

const $ = (id) => document.getElementById(id);

const state = {
  model: null,
  history: [], // completed turns, sent with the next message
  controller: null, // the AbortController of the generation in flight
  last: null, // { body, key, api }: what "Resend same key" sends again
  token: null,
  tokenRefreshAt: 0,
  demoMode: null, // null: not asked yet; false: the server answered 404
  tokenRequest: null, // the /demo/token fetch in flight, shared by concurrent callers
};

// ---- small helpers -------------------------------------------------------------------------

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // randomUUID needs a secure context; a page served over plain http on a LAN address is not one
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function badge(id, text, kind) {
  const el = $(id);
  el.textContent = text;
  el.dataset.state = kind;
}

function ms(value) {
  return value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(2)} s`;
}

// ---- the demo token ------------------------------------------------------------------------

async function bearer() {
  if (state.demoMode === false) return null;
  if (state.token && Date.now() < state.tokenRefreshAt) return state.token;
  state.tokenRequest ??= fetchToken().finally(() => {
    state.tokenRequest = null;
  });
  return state.tokenRequest;
}

async function fetchToken() {
  const response = await fetch("/demo/token", { cache: "no-store" });
  if (response.status === 404) {
    state.demoMode = false;
    badge("auth", "auth: no demo token", "neutral");
    $("auth").title = "GET /demo/token answered 404: the server is not in demo mode";
    return null;
  }
  if (!response.ok) throw await failure(response, "The demo token could not be fetched");
  const grant = await response.json();
  state.demoMode = true;
  state.token = grant.access_token;
  // renew well before expiry so a long conversation never sends a stale token
  state.tokenRefreshAt = Date.now() + Math.max(1, grant.expires_in) * 800;
  badge("auth", "auth: demo token", "ok");
  $("auth").title = `Bearer token, scope "${grant.scope}", valid ${grant.expires_in} s`;
  return state.token;
}

// ---- errors --------------------------------------------------------------------------------

class DisplayedError extends Error {
  constructor(title, message, fields) {
    super(message);
    this.title = title;
    this.fields = fields;
  }
}

// The OpenAI envelope {"error": {message, type, param, code}} or an RFC 9457 problem.
function describe(payload) {
  if (payload && typeof payload.error === "object" && payload.error) {
    const e = payload.error;
    return {
      message: e.message ?? "(no message)",
      fields: { type: e.type, code: e.code, param: e.param, trace_id: e.trace_id, request_id: e.request_id },
    };
  }
  if (payload && (payload.title || payload.detail)) {
    return {
      message: payload.detail ?? payload.title,
      fields: { type: payload.type, title: payload.title, code: payload.code, trace_id: payload.trace_id, request_id: payload.request_id },
    };
  }
  return null;
}

async function failure(response, context) {
  const text = await response.text().catch(() => "");
  let payload = null;
  try {
    payload = JSON.parse(text);
  } catch {
    // not JSON: shown as text below
  }
  const described = describe(payload);
  const fields = { ...(described?.fields ?? {}) };
  const retry = response.headers.get("retry-after");
  if (retry) fields["retry after"] = /^\d+$/.test(retry) ? `${retry} s` : retry; // seconds or a date
  const challenge = response.headers.get("www-authenticate");
  if (challenge) fields["www-authenticate"] = challenge;
  const title = `${context}: HTTP ${response.status} ${response.statusText}`.trim();
  const err = new DisplayedError(title, described?.message ?? (text.slice(0, 500) || "(empty body)"), fields);
  err.payload = payload;
  return err;
}

function showError(err) {
  const box = $("error");
  $("error-title").textContent = err.title ?? "Error";
  $("error-message").textContent = err.message;
  const list = $("error-fields");
  list.replaceChildren();
  for (const [name, value] of Object.entries(err.fields ?? {})) {
    if (value === undefined || value === null || value === "") continue;
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = String(value);
    if (name !== "hint") dd.className = "mono";
    list.append(dt, dd);
  }
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

// ---- the transcript ------------------------------------------------------------------------

function addTurn(role, text, note) {
  $("empty")?.remove();
  const li = document.createElement("li");
  li.className = `turn ${role}`;
  const who = document.createElement("div");
  who.className = "who";
  who.textContent = role === "user" ? "You" : state.model ?? "assistant";
  const content = document.createElement("div");
  content.className = "content";
  const node = document.createTextNode(text);
  content.append(node);
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = note ?? "";
  li.append(who, content, meta);
  $("transcript").append(li);
  li.scrollIntoView({ block: "end" });
  return { li, node, content, meta };
}

function setBusy(busy) {
  $("send").disabled = busy || !state.model;
  $("stop").disabled = !busy;
  $("resend").disabled = busy || !state.last;
  $("prompt").readOnly = busy;
}

// ---- one generation ------------------------------------------------------------------------

async function generate(body, key, label, apiName = "chat") {
  const api = APIS[apiName];
  clearError();
  resetInspector(key);
  const turn = addTurn("assistant", "", label);
  turn.li.dataset.status = "streaming";
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  const started = performance.now();
  let firstToken = null;
  let text = "";
  let finish = null;
  let usage = null;
  let status = "done";
  let replayed = false;
  try {
    const token = await bearer();
    const headers = {
      "Content-Type": "application/json",
      Accept: "text/event-stream",
      // a Structured Field String, as the Idempotency-Key draft defines it
      "Idempotency-Key": `"${key}"`,
    };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(api.path, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      signal: controller.signal,
      cache: "no-store",
    });
    if (!response.ok) {
      // a rejected token is dropped so that the next send asks for a fresh one
      if (response.status === 401) state.token = null;
      const err = await failure(response, "The request failed");
      if (response.status === 401 && state.demoMode === false) {
        err.fields.hint = "this server wants a bearer token: start it with --demo (make demo) " +
          "so this page gets one, or turn auth off with AIMW_AUTH=0";
      }
      inspect(response, key, err.payload);
      throw err;
    }
    replayed = inspect(response, key, null);
    const type = (response.headers.get("content-type") ?? "").split(";")[0].trim();
    if (type !== "text/event-stream") {
      // not a stream after all (e.g. a replay stored from a non-streamed request)
      ({ text, finish, usage } = api.answer(await response.json()));
      turn.node.appendData(text);
    }
    let ended = type !== "text/event-stream";
    for await (const event of ended ? [] : events(response.body)) {
      if (event.data === "[DONE]") {
        ended = true;
        break;
      }
      let payload;
      try {
        payload = JSON.parse(event.data);
      } catch {
        throw new DisplayedError("The stream sent an event that is not JSON", event.data.slice(0, 300), {});
      }
      const step = api.step(event, payload);
      const described = step.error ? describe(step.error) : null;
      if (step.error) {
        const trace = described?.fields?.trace_id;
        if (trace) setText("trace-id", trace);
        throw new DisplayedError(
          "The stream ended with an error",
          described?.message ?? event.data.slice(0, 300),
          described?.fields ?? {},
        );
      }
      if (step.usage) usage = step.usage;
      if (step.ended) ended = true; // the Responses API's last event: no [DONE] follows
      const delta = step.delta;
      if (delta) {
        if (firstToken === null) {
          firstToken = performance.now() - started;
          setText("ttft", ms(firstToken));
        }
        text += delta;
        turn.node.appendData(delta);
        turn.li.scrollIntoView({ block: "end" });
      }
      if (step.finish) finish = step.finish;
    }
    if (!ended) {
      throw new DisplayedError(
        "The stream was cut short",
        `The connection closed before the stream's ${apiName === "chat" ? "final data: [DONE]" : "response.completed"}; the answer may be incomplete.`,
        {},
      );
    }
  } catch (err) {
    if (err.name === "AbortError") {
      status = "stopped";
    } else {
      status = "error";
      showError(err instanceof DisplayedError ? err : new DisplayedError("The request failed", String(err.message ?? err), {}));
    }
  } finally {
    state.controller = null;
  }
  const elapsed = performance.now() - started;
  if (usage) {
    // a replay comes from the store at its own speed: a generation rate would mislead
    const rate = !replayed && firstToken !== null && elapsed > firstToken ? usage.completion_tokens / ((elapsed - firstToken) / 1000) : null;
    setText("tokens", `${usage.completion_tokens} completion + ${usage.prompt_tokens} prompt${rate ? ` · ${rate.toFixed(0)} tokens/s` : ""}`);
  }
  const notes = [label, replayed ? "replayed" : null, status === "stopped" ? "stopped" : null, status === "error" ? "failed" : null, finish ? `finish: ${finish}` : null, ms(elapsed)];
  turn.meta.textContent = notes.filter(Boolean).join(" · ");
  turn.li.dataset.status = status;
  turn.li.scrollIntoView({ block: "end" });
  if (!text && status !== "done") turn.content.textContent = status === "stopped" ? "(stopped before the first token)" : "(no answer: see the error below)";
  setBusy(false);
  return { text, status };
}

async function send(prompt) {
  const messages = [...state.history, { role: "user", content: prompt }];
  const api = Object.hasOwn(APIS, $("api").value) ? $("api").value : "chat";
  const maxTokens = Number($("max-tokens").value) || 256;
  const body = APIS[api].body(state.model, messages, maxTokens, Number($("temperature").value));
  const key = newKey();
  state.last = { body, key, api };
  addTurn("user", prompt);
  const { text, status } = await generate(body, key, api === "chat" ? undefined : "Responses API", api);
  // a stopped answer stays in the conversation as far as it got; a failed one does not
  if (text && status !== "error") state.history = [...messages, { role: "assistant", content: text }];
}

// ---- start-up ------------------------------------------------------------------------------

async function connect() {
  for (;;) {
    try {
      const response = await fetch("/health", { cache: "no-store" });
      const health = await response.json();
      if (response.ok) {
        state.model = health.model;
        badge("server", `${health.model} · ${health.device}`, "ok");
        setBusy(false);
        return;
      }
      badge("server", health.status === "loading" ? "loading the model…" : `server: ${health.status}`, "pending");
    } catch {
      badge("server", "server unreachable, retrying…", "bad");
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function wire() {
  const prompt = $("prompt");
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || state.controller || !state.model) return;
    prompt.value = "";
    send(text);
  });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => state.controller?.abort());
  $("resend").addEventListener("click", () => {
    if (state.last && !state.controller) generate(state.last.body, state.last.key, "resent with the same key", state.last.api);
  });
  $("new-chat").addEventListener("click", () => {
    state.controller?.abort();
    state.history = [];
    state.last = null;
    clearError();
    $("transcript").replaceChildren();
    setBusy(false);
    prompt.focus();
  });
  $("error-close").addEventListener("click", clearError);
}

wire();
setBusy(false);
connect();
bearer().catch((err) => {
  badge("auth", "auth: token failed", "bad");
  showError(err);
});
