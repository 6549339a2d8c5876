// The playground: a chat over the server's own OpenAI-compatible API, streamed with fetch.
// Every URL is relative to the page, so it works behind a provider's proxy or a path prefix.
"use strict";

const KEY_STORAGE = "llm-serving-api-key"; // sessionStorage: this tab only, never in a URL
const api = (path) => new URL("v1/" + path, document.baseURI);
const $ = (id) => document.getElementById(id);

const state = { history: [], model: null, controller: null };

function headers() {
  const result = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) result.Authorization = "Bearer " + key;
  return result;
}

function setStatus(text) {
  $("status").textContent = text;
}

function askForKey(message) {
  $("key-row").hidden = false;
  $("options").open = true;
  setStatus(message);
  $("api-key").focus();
}

async function errorMessage(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = `${response.status}: ${body.error.message}`;
  } catch (_) { /* not JSON: keep the status line */ }
  if (response.status === 429) {
    const retry = response.headers.get("Retry-After");
    message = "The server is busy. " + message + (retry ? ` Retry in ${retry} s.` : "");
  }
  return message;
}

async function loadModel() {
  const response = await fetch(api("models"), { headers: headers() });
  if (response.status === 401) {
    askForKey("This server needs an API key: enter it under Options.");
    return false;
  }
  if (!response.ok) {
    setStatus(await errorMessage(response));
    return false;
  }
  const body = await response.json();
  state.model = body.data && body.data.length ? body.data[0].id : null;
  $("model").textContent = "model: " + (state.model || "unknown");
  setStatus("");
  return true;
}

function addTurn(role, text) {
  const turn = document.createElement("div");
  turn.className = "turn " + role;
  const content = document.createElement("span");
  content.className = "content";
  content.textContent = text;
  turn.append(content);
  $("conversation").append(turn);
  turn.scrollIntoView({ block: "end" });
  return turn;
}

function requestBody(messages) {
  const body = {
    model: state.model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    temperature: Number($("temperature").value),
    max_tokens: Number($("max-tokens").value),
  };
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  return body;
}

// Server-sent events from a fetch body: "data: ..." lines, events split by blank lines.
async function* sseData(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    const events = buffer.split(/\r\n\r\n|\n\n|\r\r/);
    buffer = events.pop();
    for (const event of events) {
      const data = event.split(/\r\n|\n|\r/).filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart()).join("\n");
      if (data) yield data;
    }
  }
}

function showStats(turn, stats) {
  const line = document.createElement("span");
  line.className = "stats";
  const parts = [];
  if (stats.ttftMs !== null) parts.push(`TTFT ${stats.ttftMs.toFixed(0)} ms`);
  if (stats.tokens !== null) parts.push(`${stats.tokens} tokens`);
  if (stats.tokensPerS !== null) parts.push(`${stats.tokensPerS.toFixed(1)} tokens/s`);
  if (stats.finish) parts.push(stats.finish);
  line.textContent = parts.join(" · ");
  turn.append(line);
}

async function send(text) {
  if (!state.model && !(await loadModel())) return;
  const system = $("system").value.trim();
  const user = { role: "user", content: text };
  const messages = [...(system ? [{ role: "system", content: system }] : []), ...state.history, user];
  addTurn("user", text);
  const turn = addTurn("assistant", "");
  const content = turn.querySelector(".content");
  const controller = (state.controller = new AbortController());
  $("send").disabled = true;
  $("stop").disabled = false;
  setStatus("");
  const started = performance.now();
  let firstAt = null;
  let lastAt = null;
  let tokens = null;
  let finish = null;
  try {
    const response = await fetch(api("chat/completions"), {
      method: "POST",
      headers: headers(),
      body: JSON.stringify(requestBody(messages)),
      signal: controller.signal,
    });
    if (!response.ok) {
      const message = await errorMessage(response);
      turn.className = "turn error";
      content.textContent = message;
      if (response.status === 401) askForKey("The API key was refused: enter it under Options.");
      return;
    }
    for await (const data of sseData(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message || "the server reported an error");
      const choice = chunk.choices && chunk.choices[0];
      const delta = choice && choice.delta && choice.delta.content;
      if (delta) {
        firstAt = firstAt ?? performance.now();
        lastAt = performance.now();
        content.textContent += delta;
        turn.scrollIntoView({ block: "end" });
      }
      if (choice && choice.finish_reason) finish = choice.finish_reason;
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
    }
    state.history.push(user, { role: "assistant", content: content.textContent });
  } catch (error) {
    if (error.name === "AbortError") {
      finish = "stopped";
      state.history.push(user, { role: "assistant", content: content.textContent });
    } else {
      turn.classList.add("error");
      setStatus("Error: " + error.message);
    }
  } finally {
    state.controller = null;
    $("send").disabled = false;
    $("stop").disabled = true;
    const decodeS = firstAt !== null && lastAt > firstAt ? (lastAt - firstAt) / 1000 : null;
    showStats(turn, {
      ttftMs: firstAt === null ? null : firstAt - started,
      tokens,
      tokensPerS: tokens && decodeS ? (tokens - 1) / decodeS : null,
      finish,
    });
  }
}

function main() {
  const stored = sessionStorage.getItem(KEY_STORAGE);
  if (stored) {
    $("api-key").value = stored;
    $("key-row").hidden = false;
  }
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
    loadModel();
  });
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("message").value.trim();
    if (!text || state.controller) return;
    $("message").value = "";
    send(text);
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("clear").addEventListener("click", () => {
    state.history = [];
    $("conversation").replaceChildren();
    $("message").focus();
  });
  loadModel();
  $("message").focus();
}

main();
