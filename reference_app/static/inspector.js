// The "Last response" panel: what the middlewares said about the last response, read from its
// headers (and from an error body when there is one). Values are only ever set as text.

const $ = (id) => document.getElementById(id);

export function setText(id, text, title) {
  const el = $(id);
  el.textContent = text ?? "—";
  if (title) el.title = title;
  else el.removeAttribute("title");
}

const TRACEPARENT = /^[\da-f]{2}-([\da-f]{32})-[\da-f]{16}-[\da-f]{2}/i;

function traceId(headers, payload) {
  for (const name of ["traceparent", "traceresponse"]) {
    const match = TRACEPARENT.exec(headers.get(name) ?? "");
    if (match) return match[1];
  }
  return headers.get("x-trace-id") ?? payload?.error?.trace_id ?? payload?.trace_id ?? null;
}

// The members of an RFC 8941 list of items: "name";a=1;b="x", "other";a=2
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

export function inspect(response, key, payload) {
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
  return replayed;
}

export function resetInspector(key) {
  for (const id of ["status", "request-id", "trace-id", "replayed", "ttft", "tokens"]) setText(id, "—");
  setText("status", "waiting…");
  setText("idempotency-key", key);
}
