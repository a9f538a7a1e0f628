// The admin playground: fills the model/version pickers, posts the conversation (with tools and
// custom_inputs when given) and renders the reply as it streams (text/event-stream read with
// fetch + a reader; no EventSource: it is a POST), or whole when streaming is off (predict).
// After a reply with tool calls, the next messages typed are their results (tool messages, one
// per call), and the model is called again once every call has one.
// Text is always inserted with textContent: nothing a model returns is interpreted as HTML.
"use strict";

(function () {
  const configElement = document.getElementById("cm-playground-config");
  const form = document.getElementById("cm-playground-form");
  if (!configElement || !form) return;

  const config = JSON.parse(configElement.textContent);
  const modelSelect = document.getElementById("cm-model");
  const versionSelect = document.getElementById("cm-version");
  const versionLink = document.getElementById("cm-version-link");
  const systemInput = document.getElementById("cm-system");
  const temperatureInput = document.getElementById("cm-temperature");
  const maxTokensInput = document.getElementById("cm-max-tokens");
  const streamInput = document.getElementById("cm-stream");
  const toolsInput = document.getElementById("cm-tools");
  const customInputsInput = document.getElementById("cm-custom-inputs");
  const transcript = document.getElementById("cm-transcript");
  const emptyNote = document.getElementById("cm-empty");
  const input = document.getElementById("cm-input");
  const sendButton = document.getElementById("cm-send");
  const target = document.getElementById("cm-target");
  const toolPrompt = document.getElementById("cm-tool-prompt");
  const toolPromptText = document.getElementById("cm-tool-prompt-text");
  const messagePlaceholder = input.placeholder;
  const csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  let history = []; // the messages sent so far, without the system prompt
  let pendingCalls = []; // the last reply's tool calls still waiting for their results
  let callsInReply = 0;
  let conversation = 0; // bumped by "Clear": an answer still streaming then leaves history alone
  let busy = false;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function option(value, label) {
    const node = element("option", null, label);
    node.value = value;
    return node;
  }

  function currentModel() {
    return config.models.find((model) => model.name === modelSelect.value);
  }

  function fillModels() {
    for (const model of config.models) modelSelect.appendChild(option(model.name, model.name));
    const wanted = config.selected.model;
    if (wanted && config.models.some((model) => model.name === wanted)) modelSelect.value = wanted;
  }

  function fillVersions(selectFromUrl) {
    const model = currentModel();
    versionSelect.replaceChildren();
    if (!model) return;
    const latestLabel = model.latest ? `latest (v${model.latest})` : "latest (none ready)";
    versionSelect.appendChild(option("", latestLabel));
    const aliasNames = Object.keys(model.aliases);
    if (aliasNames.length) {
      const group = element("optgroup");
      group.label = "Aliases";
      for (const name of aliasNames) {
        group.appendChild(option(`alias:${name}`, `@${name} → v${model.aliases[name]}`));
      }
      versionSelect.appendChild(group);
    }
    const group = element("optgroup");
    group.label = "Versions";
    for (const version of model.versions) {
      group.appendChild(option(`version:${version.version}`, version.label));
    }
    versionSelect.appendChild(group);
    if (selectFromUrl) {
      const wanted = config.selected.alias
        ? `alias:${config.selected.alias}`
        : config.selected.version
          ? `version:${config.selected.version}`
          : "";
      if ([...versionSelect.options].some((node) => node.value === wanted)) {
        versionSelect.value = wanted;
      }
    }
    describeTarget();
  }

  function selection() {
    const [kind, value] = versionSelect.value.split(":");
    return {
      model: modelSelect.value,
      version: kind === "version" ? Number(value) : null,
      alias: kind === "alias" ? value : null,
    };
  }

  function describeTarget() {
    const chosen = selection();
    const model = currentModel();
    let label = chosen.model;
    let number = null;
    if (chosen.alias) {
      label += `@${chosen.alias}`;
      number = model.aliases[chosen.alias];
    } else if (chosen.version) {
      label += `/${chosen.version}`;
      number = chosen.version;
    } else {
      number = model && model.latest;
    }
    target.textContent = number && !chosen.version ? `${label} · v${number}` : label;
    const url = new URL(window.location.href);
    url.searchParams.set("model", chosen.model);
    url.searchParams.delete("version");
    url.searchParams.delete("alias");
    if (chosen.version) url.searchParams.set("version", chosen.version);
    if (chosen.alias) url.searchParams.set("alias", chosen.alias);
    window.history.replaceState(null, "", url);
    const shown = model && model.versions.find((version) => version.version === number);
    versionLink.hidden = !shown;
    if (shown) {
      versionLink.href = shown.url;
      versionLink.textContent = `Version ${number}: signature, code, curl ›`;
    }
  }

  function scrollToEnd() {
    transcript.scrollTop = transcript.scrollHeight;
  }

  function addBubble(role, text, className) {
    if (emptyNote) emptyNote.hidden = true;
    const bubble = element("div", `cm-message cm-message-${role}${className ? " " + className : ""}`);
    bubble.appendChild(element("div", "cm-message-role", role));
    bubble.appendChild(element("div", "cm-message-content", text));
    transcript.appendChild(bubble);
    scrollToEnd();
    return bubble;
  }

  function contentText(content) {
    if (content === null || content === undefined) return "";
    if (typeof content === "string") return content;
    if (Array.isArray(content)) {
      return content.map((part) => (part && part.text) || JSON.stringify(part)).join("\n");
    }
    return JSON.stringify(content, null, 2);
  }

  function renderError(status, body, midStream) {
    const error = (body && body.error) || {};
    const kind = error.code || error.type;
    // A failure after the stream began came with a 200 already sent: say when it happened.
    const when = midStream ? "after the answer began" : status ? `HTTP ${status}` : "";
    const title = [kind, when].filter(Boolean).join(" · ") || "error";
    const bubble = addBubble("error", error.message || "The request failed.", "cm-message-failed");
    bubble.querySelector(".cm-message-role").textContent = title;
    if (error.detail) bubble.appendChild(element("pre", "cm-code cm-error-detail", `raised ${error.detail}`));
    if (error.detail) bubble.appendChild(element("div", "cm-message-meta", "The traceback is in the server log."));
    if (error.param) bubble.appendChild(element("div", "cm-message-meta", `field: ${error.param}`));
  }

  // A JSON field of the settings: its value, or throws naming the field.
  function jsonField(node, label, check) {
    const text = node.value.trim();
    if (!text) return undefined;
    let value;
    try {
      value = JSON.parse(text);
    } catch (parseError) {
      throw new Error(`${label} is not valid JSON: ${parseError.message}`);
    }
    if (!check(value)) throw new Error(`${label} must be ${check.expected}`);
    return value;
  }
  const isList = Object.assign((value) => Array.isArray(value), { expected: "a JSON list of tools" });
  const isObject = Object.assign((value) => value !== null && typeof value === "object" && !Array.isArray(value), {
    expected: "a JSON object",
  });

  function buildRequest() {
    const chosen = selection();
    const messages = [];
    const system = systemInput.value.trim();
    if (system) messages.push({ role: "system", content: system });
    messages.push(...history);
    const body = { model: chosen.model, messages };
    if (chosen.version) body.version = chosen.version;
    if (chosen.alias) body.alias = chosen.alias;
    if (temperatureInput.value !== "") body.temperature = Number(temperatureInput.value);
    if (maxTokensInput.value !== "") body.max_tokens = Number(maxTokensInput.value);
    body.stream = streamInput.checked;
    const tools = jsonField(toolsInput, "Tools", isList);
    if (tools !== undefined) body.tools = tools;
    const customInputs = jsonField(customInputsInput, "custom_inputs", isObject);
    if (customInputs !== undefined) body.custom_inputs = customInputs;
    return body;
  }

  function setBusy(value) {
    busy = value;
    // While an answer streams, the button stops it (closing the stream stops the model).
    sendButton.textContent = value ? "Stop" : "Send";
    sendButton.classList.toggle("cm-stop", value);
    transcript.classList.toggle("cm-busy", value);
  }

  function seconds(ms) {
    return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
  }

  // The composer says whose message comes next: the user's, or a tool call's result.
  function describeComposer() {
    const call = pendingCalls[0];
    toolPrompt.hidden = !call;
    if (!call) {
      input.placeholder = messagePlaceholder;
      return;
    }
    const position = callsInReply > 1 ? ` ${callsInReply - pendingCalls.length + 1} of ${callsInReply}` : "";
    toolPromptText.replaceChildren(
      `Tool result${position}: `,
      element("code", null, `${call.function.name}(${call.function.arguments})`),
      ` (call ${call.id}), sent as a tool message.`,
    );
    input.placeholder = `The result of ${call.function.name}…  (Enter to send)`;
  }

  // --- server-sent events ---------------------------------------------------------------------

  // Reads `response.body` as text/event-stream: onData(text) for each event's data, onComment()
  // for each comment line (": keep-alive"). Resolves when the body ends.
  async function readEvents(response, onData, onComment) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder("utf-8");
    let buffer = "";
    let data = [];

    function line(text) {
      if (text === "") {
        if (data.length) onData(data.join("\n"));
        data = [];
      } else if (text.startsWith(":")) {
        onComment(text.slice(1).trim());
      } else {
        const colon = text.indexOf(":");
        const field = colon < 0 ? text : text.slice(0, colon);
        let value = colon < 0 ? "" : text.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") data.push(value);
      }
    }

    function drain(final) {
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop(); // an unfinished line waits for the rest
      for (const text of lines) line(text);
      if (final) {
        if (buffer !== "") line(buffer);
        line(""); // an event cut short at the end still counts
        buffer = "";
      }
    }

    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      // A "\r" at the very end may be the first half of "\r\n": keep it for the next read.
      const pending = buffer.endsWith("\r") ? "\r" : "";
      if (pending) buffer = buffer.slice(0, -1);
      drain(false);
      buffer += pending;
    }
    buffer += decoder.decode();
    drain(true);
  }

  // --- one streamed answer --------------------------------------------------------------------

  // The bubbles of one answer (one per choice) filled in as chunks arrive.
  function startAnswer(startedAt) {
    const answer = {
      startedAt,
      firstTokenAt: null,
      model: null, // "name/N" from the chunks: the version that answered
      usage: null,
      chunks: 0,
      keepAlives: 0,
      events: [],
      choices: new Map(),
      done: false,
      failed: false,
      whole: false, // streaming off: one chat.completion, no first token to time
    };
    answer.choice = (index) => {
      let choice = answer.choices.get(index);
      if (choice) return choice;
      const bubble = addBubble("assistant", "", "cm-message-streaming");
      choice = {
        index,
        bubble,
        content: bubble.querySelector(".cm-message-content"),
        text: "",
        refusal: "",
        refusalNode: null,
        toolCalls: [],
        toolNode: null,
        finish: null,
        status: element("div", "cm-message-meta cm-live", "waiting for the first token…"),
      };
      bubble.appendChild(choice.status);
      answer.choices.set(index, choice);
      return choice;
    };
    answer.choice(0); // shown at once, before anything arrives
    return answer;
  }

  function mergeToolCalls(choice, deltas) {
    deltas.forEach((delta, position) => {
      const index = Number.isInteger(delta.index) ? delta.index : position;
      const call = choice.toolCalls[index] || { id: null, type: "function", function: { name: "", arguments: "" } };
      if (delta.id) call.id = delta.id;
      if (delta.type) call.type = delta.type;
      const fn = delta.function || {};
      if (fn.name) call.function.name += fn.name;
      if (fn.arguments) call.function.arguments += fn.arguments;
      choice.toolCalls[index] = call;
    });
    if (!choice.toolNode) {
      choice.bubble.insertBefore(element("div", "cm-message-role", "tool calls"), choice.status);
      choice.toolNode = element("pre", "cm-code");
      choice.bubble.insertBefore(choice.toolNode, choice.status);
    }
    const shown = choice.toolCalls.filter(Boolean).map((call) => {
      let args = call.function.arguments;
      try {
        args = JSON.parse(args);
      } catch (incomplete) {
        // still arriving (or not JSON): shown as text
      }
      return { ...call, function: { ...call.function, arguments: args } };
    });
    choice.toolNode.textContent = JSON.stringify(shown, null, 2);
  }

  function applyChunk(answer, chunk) {
    answer.chunks += 1;
    if (chunk.model) answer.model = chunk.model;
    if (chunk.usage) answer.usage = chunk.usage;
    for (const part of chunk.choices || []) {
      const choice = answer.choice(Number.isInteger(part.index) ? part.index : 0);
      const delta = part.delta || {};
      const text = contentText(delta.content);
      const gotToken = Boolean(text) || Boolean(delta.refusal) || Boolean(delta.tool_calls && delta.tool_calls.length);
      if (gotToken && answer.firstTokenAt === null) answer.firstTokenAt = performance.now();
      if (delta.role && delta.role !== "assistant") {
        choice.bubble.querySelector(".cm-message-role").textContent = delta.role;
      }
      if (text) {
        choice.text += text;
        choice.content.append(text); // a text node: never interpreted as HTML
      }
      if (delta.refusal) {
        choice.refusal += delta.refusal;
        if (!choice.refusalNode) {
          choice.refusalNode = element("div", "cm-refusal");
          choice.bubble.insertBefore(choice.refusalNode, choice.status);
        }
        choice.refusalNode.textContent = `Refusal: ${choice.refusal}`;
      }
      if (delta.tool_calls && delta.tool_calls.length) mergeToolCalls(choice, delta.tool_calls);
      if (part.finish_reason) choice.finish = part.finish_reason;
    }
  }

  function versionOf(answer) {
    const model = currentModel();
    if (!answer.model || !model) return null;
    const number = Number(answer.model.slice(answer.model.lastIndexOf("/") + 1));
    return model.versions.find((version) => version.version === number) || { version: number, url: null };
  }

  function liveStatus(answer) {
    const elapsed = seconds(performance.now() - answer.startedAt);
    let text = answer.firstTokenAt === null ? `waiting for the first token… ${elapsed}` : `streaming… ${elapsed}`;
    if (answer.keepAlives) text += ` · ${answer.keepAlives} keep-alive${answer.keepAlives > 1 ? "s" : ""}`;
    for (const choice of answer.choices.values()) choice.status.textContent = text;
  }

  function finishAnswer(answer, outcome) {
    const endedAt = performance.now();
    const version = versionOf(answer);
    const choices = [...answer.choices.values()].sort((a, b) => a.index - b.index);
    for (const choice of choices) {
      choice.bubble.classList.remove("cm-message-streaming");
      if (!choice.text && !choice.refusal && !choice.toolCalls.length && outcome === "done") {
        choice.content.textContent = "(empty reply)";
      }
      const meta = element("div", "cm-message-meta");
      if (version && version.url) {
        const link = element("a", null, answer.model);
        link.href = version.url;
        link.title = `Version ${version.version}: signature, code, curl`;
        meta.appendChild(link);
      } else {
        meta.append(answer.model || modelSelect.value);
      }
      const parts = [];
      if (answer.firstTokenAt !== null && !answer.whole) parts.push(`first token ${seconds(answer.firstTokenAt - answer.startedAt)}`);
      parts.push(`total ${seconds(endedAt - answer.startedAt)}`);
      const usage = answer.usage;
      if (usage && usage.total_tokens !== undefined) parts.push(`${usage.total_tokens} tokens`);
      if (choice.finish) parts.push(`finish: ${choice.finish}`);
      if (outcome === "stopped") parts.push("stopped");
      if (choices.length > 1) parts.push(`choice ${choice.index}`);
      meta.append(` · ${parts.join(" · ")}`);
      const raw = element("details", "cm-raw");
      const rawLabel = answer.whole
        ? "raw chat.completion"
        : `raw stream (${answer.chunks} chunk${answer.chunks === 1 ? "" : "s"})`;
      raw.appendChild(element("summary", null, rawLabel));
      raw.appendChild(element("pre", "cm-code", answer.events.join("\n")));
      meta.appendChild(raw);
      choice.status.replaceWith(meta);
      choice.status = meta;
    }
  }

  function failAnswer(answer, error) {
    const midStream = error.status === 200;
    for (const choice of answer.choices.values()) {
      if (!choice.text && !choice.refusal && !choice.toolCalls.length) {
        choice.bubble.remove();
        answer.choices.delete(choice.index);
      }
    }
    if (answer.choices.size) finishAnswer(answer, "failed");
    renderError(error.status, { error: error.body }, midStream);
  }

  function historyOf(answer) {
    const first = answer.choices.get(0) || [...answer.choices.values()][0];
    if (!first) return null;
    // A call streamed without an id gets one: its result (a tool message) must name it.
    const calls = first.toolCalls.filter(Boolean).map((call, index) => ({ ...call, id: call.id || `call_${index}` }));
    if (calls.length) return { role: "assistant", content: first.text || null, tool_calls: calls };
    return { role: "assistant", content: first.text };
  }

  // A whole chat.completion (streaming off) shown as one chunk of each choice.
  function applyCompletion(answer, completion) {
    answer.whole = true;
    answer.events.push(JSON.stringify(completion, null, 2));
    applyChunk(answer, {
      model: completion.model,
      usage: completion.usage,
      choices: (completion.choices || []).map((choice) => ({
        index: choice.index,
        delta: choice.message || {},
        finish_reason: choice.finish_reason,
      })),
    });
    answer.done = true;
  }

  async function errorBody(response) {
    try {
      const body = await response.json();
      if (body && body.error) return body.error;
    } catch (parseError) {
      // not JSON
    }
    return { message: `The server answered ${response.status} without an OpenAI error object.` };
  }

  let controller = null;

  async function send() {
    const text = input.value.trim();
    if (!text || busy) return;
    const call = pendingCalls[0]; // this message is that call's result
    let request;
    try {
      history.push(call ? { role: "tool", tool_call_id: call.id, content: text } : { role: "user", content: text });
      request = buildRequest();
    } catch (invalid) {
      history.pop();
      renderError(0, { error: { type: "settings", message: invalid.message } }, false);
      return;
    }
    const sentBubble = addBubble(call ? "tool" : "user", text);
    input.value = "";
    if (call) {
      sentBubble.querySelector(".cm-message-role").textContent = `tool · ${call.function.name} · ${call.id}`;
      pendingCalls.shift();
      describeComposer();
      if (pendingCalls.length) {
        input.focus(); // the model is called once every call has its result
        return;
      }
    }
    setBusy(true);
    const started = conversation;
    controller = new AbortController();
    const answer = startAnswer(performance.now());
    const ticker = window.setInterval(() => liveStatus(answer), 100);
    let failure = null; // {status, body}: the message was not answered
    try {
      const response = await fetch(config.invokeUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          Accept: request.stream ? "text/event-stream" : "application/json",
          "X-CSRFToken": csrfToken,
        },
        body: JSON.stringify(request),
        signal: controller.signal,
      });
      const type = response.headers.get("Content-Type") || "";
      if (response.ok && !request.stream && type.startsWith("application/json")) {
        applyCompletion(answer, await response.json());
      } else if (!response.ok || !type.startsWith("text/event-stream")) {
        failure = { status: response.status, body: await errorBody(response) };
      } else {
        await readEvents(
          response,
          (data) => {
            if (answer.done) return;
            answer.events.push(`data: ${data}`);
            if (data === "[DONE]") {
              answer.done = true;
              return;
            }
            let event;
            try {
              event = JSON.parse(data);
            } catch (parseError) {
              failure = { status: response.status, body: { type: "stream error", message: `Not JSON: ${data}` } };
              return;
            }
            if (event && event.error) {
              // The model failed after the stream began: the status is already 200.
              failure = { status: response.status, body: event.error };
              return;
            }
            applyChunk(answer, event);
            scrollToEnd();
          },
          (comment) => {
            answer.events.push(`: ${comment}`);
            if (comment === "keep-alive") answer.keepAlives += 1;
            liveStatus(answer);
          },
        );
        if (!answer.done && !failure) {
          failure = {
            status: response.status,
            body: { type: "stream error", message: "The stream ended before data: [DONE]." },
          };
        }
      }
    } catch (networkError) {
      if (networkError.name === "AbortError") {
        answer.stopped = true;
      } else {
        failure = { status: 0, body: { type: "network error", message: String(networkError) } };
      }
    } finally {
      window.clearInterval(ticker);
      controller = null;
    }
    if (started !== conversation) {
      finishAnswer(answer, "stopped"); // its bubbles are gone with the conversation
    } else if (failure) {
      // The message was not answered: keep it out of the history so it can be resent.
      history.pop();
      if (call) {
        pendingCalls.unshift(call);
        describeComposer();
      }
      sentBubble.classList.add("cm-message-unsent");
      failAnswer(answer, failure);
      if (!input.value) input.value = text;
    } else {
      finishAnswer(answer, answer.stopped ? "stopped" : "done");
      const reply = historyOf(answer);
      if (reply) history.push(reply);
      pendingCalls = reply && reply.tool_calls && !answer.stopped ? [...reply.tool_calls] : [];
      callsInReply = pendingCalls.length;
      describeComposer();
    }
    setBusy(false);
    scrollToEnd();
    input.focus();
  }

  function clearConversation() {
    if (controller) controller.abort();
    conversation += 1;
    history = [];
    pendingCalls = [];
    describeComposer();
    for (const node of [...transcript.querySelectorAll(".cm-message")]) node.remove();
    if (emptyNote) emptyNote.hidden = false;
    input.focus();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (busy && controller) controller.abort();
    else send();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  modelSelect.addEventListener("change", () => {
    fillVersions(false);
    clearConversation();
  });
  versionSelect.addEventListener("change", describeTarget);
  document.getElementById("cm-clear").addEventListener("click", clearConversation);
  document.getElementById("cm-tool-skip").addEventListener("click", () => {
    pendingCalls = [];
    describeComposer();
    input.focus();
  });

  fillModels();
  fillVersions(true);
})();
