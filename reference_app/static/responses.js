// The two APIs the playground can talk to: Chat Completions (`data:` chunks ending in
// `data: [DONE]`) and the Responses API (typed events, `event: response.output_text.delta` ...
// ending with `response.completed`, `response.incomplete` or `response.failed`). Each reads one
// stream event into the same small step: { delta, usage, finish, error, ended }.

export const APIS = {
  chat: {
    path: "/v1/chat/completions",
    body: (model, messages, maxTokens, temperature) => ({
      model,
      messages,
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: maxTokens,
      temperature,
    }),
    step: chatStep,
    answer: (payload) => ({
      text: payload.choices?.[0]?.message?.content ?? "",
      finish: payload.choices?.[0]?.finish_reason ?? null,
      usage: payload.usage ?? null,
    }),
  },
  responses: {
    path: "/v1/responses",
    // the conversation so far as message items: the same roles and text as chat messages
    body: (model, messages, maxTokens, temperature) => ({
      model,
      input: messages,
      stream: true,
      max_output_tokens: maxTokens,
      temperature,
    }),
    step: responsesStep,
    answer: (payload) => ({
      text: outputText(payload),
      finish: finishOf(payload),
      usage: usageOf(payload),
    }),
  },
};

// {completion_tokens, prompt_tokens}, the names the inspector shows, from either API's usage
function usageOf(response) {
  const usage = response?.usage;
  if (!usage) return null;
  return { completion_tokens: usage.output_tokens, prompt_tokens: usage.input_tokens };
}

function finishOf(response) {
  return response?.incomplete_details?.reason ?? response?.status ?? null;
}

// The text of a response object: its output messages' output_text parts, in order.
export function outputText(response) {
  const parts = [];
  for (const item of response?.output ?? []) {
    if (item?.type !== "message") continue;
    for (const part of item.content ?? []) if (part?.type === "output_text") parts.push(part.text ?? "");
  }
  return parts.join("");
}

function chatStep(event, payload) {
  if (event.event === "error" || payload.error) return { error: payload };
  const choice = payload.choices?.[0];
  return {
    delta: choice?.delta?.content ?? null,
    usage: payload.usage ?? null,
    finish: choice?.finish_reason ?? null,
  };
}

export function responsesStep(event, payload) {
  const type = payload.type ?? event.event;
  if (type === "error") {
    // the error event carries its fields at the top: shown like an OpenAI error envelope
    const { code, message, param, trace_id } = payload;
    return { error: { error: { type: "error", code, message, param, trace_id } }, ended: true };
  }
  if (type === "response.output_text.delta") return { delta: payload.delta ?? "" };
  if (type === "response.failed") {
    const failed = payload.response?.error ?? {};
    return { error: { error: { type: "response.failed", code: failed.code, message: failed.message } }, ended: true };
  }
  if (type === "response.completed" || type === "response.incomplete") {
    return { usage: usageOf(payload.response), finish: finishOf(payload.response), ended: true };
  }
  return {};
}
