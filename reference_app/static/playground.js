// The playground: streams chat completions from this server and shows what the middlewares
// said about the last response. No framework and no build step; model output is only ever
// inserted as text, never as HTML.

import { events } from "./sse.js";

const $ = (id) => document.getElementById(id);

const state = {
  model: null,
  history: [], // completed turns, sent with the next message
  controller: null, // the AbortController of the generation in flight
  last: null, // { body, key }: what "Resend same key" sends again
  token: null,
  tokenRefreshAt: 0,
  demoMode: null, // null: not asked yet; false: the server answered 404
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

function setText(id, text, title) {
  const el = $(id);
  el.textContent = text ?? "—";
  if (title) el.title = title;
  else el.removeAttribute("title");
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
  if (retry) fields["retry after"] = `${retry} s`;
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
    dd.className = "mono";
    list.append(dt, dd);
  }
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

// ---- the inspector -------------------------------------------------------------------------

const TRACEPARENT = /^[\da-f]{2}-([\da-f]{32})-[\da-f]{16}-[\da-f]{2}/i;

function traceId(headers, payload) {
  for (const name of ["traceparent", "traceresponse"]) {
    const match = TRACEPARENT.exec(headers.get(name) ?? "");
    if (match) return match[1];
  }
  return headers.get("x-trace-id") ?? payload?.error?.trace_id ?? payload?.trace_id ?? null;
}

// One member of an RFC 8941 list: "name";a=1;b="x"
function sfItems(value) {
  const items = [];
  for (const member of (value ?? "").split(/,(?=(?:[^"]*"[^"]*")*[^"]*$)/)) {
    const [head, ...params] = member.trim().split(";");
    if (!head) continue;
    const item = { name: head.replace(/^"|"$/g, ""), params: {} };
    for (const param of params) {
      const [key, raw = "?1"] = param.trim().split("=");
      item.params[key] = raw.replace(/^"|"$/g, "");
    }
    items.push(item);
  }
  return items;
}

const OPENAI_KINDS = ["requests", "tokens"];

function rateLimits(headers) {
  const rows = [];
  const policies = Object.fromEntries(sfItems(headers.get("ratelimit-policy")).map((p) => [p.name, p]));
  for (const item of sfItems(headers.get("ratelimit"))) {
    const policy = policies[item.name]?.params ?? {};
    const unit = policy.qu ? ` ${policy.qu}` : "";
    const quota = policy.q ? ` / ${policy.q}` : "";
    const window = policy.w ? ` per ${policy.w} s` : "";
    rows.push([item.name, `${item.params.r ?? "?"}${quota}${unit}${window}`, item.params.t ? `in ${item.params.t} s` : "—"]);
  }
  for (const kind of OPENAI_KINDS) {
    const remaining = headers.get(`x-ratelimit-remaining-${kind}`);
    if (remaining === null) continue;
    const limit = headers.get(`x-ratelimit-limit-${kind}`);
    const reset = headers.get(`x-ratelimit-reset-${kind}`);
    rows.push([`x-ratelimit ${kind}`, limit ? `${remaining} / ${limit}` : remaining, reset ? `in ${reset}` : "—"]);
  }
  const raw = [];
  headers.forEach((value, name) => {
    if (/^(ratelimit|ratelimit-policy|x-ratelimit-.+|retry-after)$/.test(name)) raw.push([name, value]);
  });
  return { rows, raw };
}

function inspect(response, key, payload) {
  const h = response.headers;
  setText("status", `${response.status} ${response.statusText}`.trim());
  setText("request-id", h.get("x-request-id") ?? payload?.error?.request_id ?? null);
  setText("trace-id", traceId(h, payload));
  setText("idempotency-key", key);
  const replayed = (h.get("idempotent-replayed") ?? "").toLowerCase() === "true";
  const el = $("replayed");
  el.textContent = replayed ? "yes: a stored response, replayed" : response.ok ? "no: generated now" : "no";
  el.dataset.replayed = String(replayed);

  const { rows, raw } = rateLimits(h);
  const body = $("limits").tBodies[0];
  body.replaceChildren(
    ...rows.map((cells) => {
      const tr = document.createElement("tr");
      for (const cell of cells) {
        const td = document.createElement("td");
        td.textContent = cell;
        tr.append(td);
      }
      return tr;
    }),
  );
  $("limits").hidden = rows.length === 0;
  $("limits-none").hidden = raw.some(([name]) => name !== "retry-after");
  $("limits-raw-box").hidden = raw.length === 0;
  $("limits-raw").replaceChildren(
    ...raw.flatMap(([name, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      dd.className = "mono";
      return [dt, dd];
    }),
  );
}

function resetInspector(key) {
  for (const id of ["status", "request-id", "trace-id", "replayed", "ttft", "tokens"]) setText(id, "—");
  setText("status", "waiting…");
  setText("idempotency-key", key);
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

async function generate(body, key, label) {
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
  try {
    const token = await bearer();
    const headers = {
      "Content-Type": "application/json",
      Accept: "text/event-stream",
      // a Structured Field String, as the Idempotency-Key draft defines it
      "Idempotency-Key": `"${key}"`,
    };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      signal: controller.signal,
      cache: "no-store",
    });
    if (!response.ok) {
      const err = await failure(response, "The request failed");
      inspect(response, key, err.payload);
      throw err;
    }
    inspect(response, key, null);
    for await (const event of events(response.body)) {
      if (event.data === "[DONE]") break;
      let payload;
      try {
        payload = JSON.parse(event.data);
      } catch {
        throw new DisplayedError("The stream sent an event that is not JSON", event.data.slice(0, 300), {});
      }
      const described = event.event === "error" || payload.error ? describe(payload) : null;
      if (described || event.event === "error") {
        const trace = described?.fields?.trace_id;
        if (trace) setText("trace-id", trace);
        throw new DisplayedError(
          "The stream ended with an error",
          described?.message ?? event.data.slice(0, 300),
          described?.fields ?? {},
        );
      }
      if (payload.usage) usage = payload.usage;
      const choice = payload.choices?.[0];
      if (!choice) continue;
      const delta = choice.delta?.content;
      if (delta) {
        if (firstToken === null) {
          firstToken = performance.now() - started;
          setText("ttft", ms(firstToken));
        }
        text += delta;
        turn.node.appendData(delta);
        turn.li.scrollIntoView({ block: "end" });
      }
      if (choice.finish_reason) finish = choice.finish_reason;
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
    const rate = firstToken !== null && elapsed > firstToken ? usage.completion_tokens / ((elapsed - firstToken) / 1000) : null;
    setText("tokens", `${usage.completion_tokens} completion + ${usage.prompt_tokens} prompt${rate ? ` · ${rate.toFixed(0)} tokens/s` : ""}`);
  }
  const notes = [label, status === "stopped" ? "stopped" : null, status === "error" ? "failed" : null, finish ? `finish: ${finish}` : null, ms(elapsed)];
  turn.meta.textContent = notes.filter(Boolean).join(" · ");
  turn.li.dataset.status = status;
  turn.li.scrollIntoView({ block: "end" });
  if (!text && status !== "done") turn.content.textContent = status === "stopped" ? "(stopped before the first token)" : "(no answer: see the error below)";
  setBusy(false);
  return { text, status };
}

async function send(prompt) {
  const messages = [...state.history, { role: "user", content: prompt }];
  const body = {
    model: state.model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: Number($("max-tokens").value) || 256,
    temperature: Number($("temperature").value),
  };
  const key = newKey();
  state.last = { body, key };
  addTurn("user", prompt);
  const { text, status } = await generate(body, key);
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
    if (state.last && !state.controller) generate(state.last.body, state.last.key, "resent with the same key");
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
