// An incremental text/event-stream parser (WHATWG HTML, "event stream interpretation").
// Feed it decoded text as it arrives; it yields each complete event once its blank line is seen.
// Lines may end in CRLF, LF or CR, and a CRLF may be split across two chunks.

export class SSEParser {
  constructor() {
    this.pending = "";
    this.data = [];
    this.event = "";
    this.id = null;
    this.skipLF = false; // the previous chunk ended in CR: a leading LF belongs to it
  }

  *feed(text) {
    if (this.skipLF && text.startsWith("\n")) text = text.slice(1);
    this.skipLF = false;
    const buffer = this.pending + text;
    let start = 0;
    for (let i = 0; i < buffer.length; i++) {
      const c = buffer.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = buffer.slice(start, i);
      if (c === 13) {
        if (i + 1 < buffer.length) {
          if (buffer.charCodeAt(i + 1) === 10) i++;
        } else {
          this.skipLF = true;
        }
      }
      start = i + 1;
      const event = this.line(line);
      if (event) yield event;
    }
    this.pending = buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      const event = this.data.length
        ? { event: this.event || "message", data: this.data.join("\n"), id: this.id }
        : null;
      this.data = [];
      this.event = "";
      return event;
    }
    if (line.startsWith(":")) return null; // a comment, e.g. a keep-alive heartbeat
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    return null;
  }
}

// The events of a fetch Response body, as they arrive. Aborting the fetch rejects the pending
// read with an AbortError; leaving the loop early cancels the body, which closes the connection.
export async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SSEParser();
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        finished = true;
        return;
      }
      yield* parser.feed(value);
    }
  } finally {
    if (!finished) reader.cancel().catch(() => {});
  }
}
