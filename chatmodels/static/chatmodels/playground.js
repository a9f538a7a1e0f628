// The admin playground: fills the model/version pickers, posts the conversation, renders replies.
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
  const transcript = document.getElementById("cm-transcript");
  const emptyNote = document.getElementById("cm-empty");
  const input = document.getElementById("cm-input");
  const sendButton = document.getElementById("cm-send");
  const target = document.getElementById("cm-target");
  const csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  let history = []; // [{role, content}] without the system prompt
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
      const suffix = version.status === "archived" ? " (archived)" : "";
      group.appendChild(option(`version:${version.version}`, `v${version.version}${suffix}`));
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

  function renderCompletion(data) {
    const completion = data.completion || {};
    const choices = completion.choices || [];
    for (const choice of choices) {
      const message = choice.message || {};
      const text = contentText(message.content);
      const bubble = addBubble(message.role || "assistant", text || (message.refusal ? "" : "(empty reply)"));
      if (message.refusal) bubble.appendChild(element("div", "cm-refusal", `Refusal: ${message.refusal}`));
      if (message.tool_calls && message.tool_calls.length) {
        bubble.appendChild(element("div", "cm-message-role", "tool calls"));
        bubble.appendChild(element("pre", "cm-code", JSON.stringify(message.tool_calls, null, 2)));
      }
      const meta = [`${data.model}/v${data.version}`, `${data.elapsed_ms} ms`];
      const usage = completion.usage;
      if (usage && usage.total_tokens !== undefined) meta.push(`${usage.total_tokens} tokens`);
      if (choice.finish_reason) meta.push(`finish: ${choice.finish_reason}`);
      if (choices.length > 1) meta.push(`choice ${choice.index}`);
      const footer = element("div", "cm-message-meta", meta.join(" · "));
      const raw = element("details", "cm-raw");
      raw.appendChild(element("summary", null, "raw response"));
      raw.appendChild(element("pre", "cm-code", JSON.stringify(completion, null, 2)));
      footer.appendChild(raw);
      bubble.appendChild(footer);
      if (message.role !== "tool") {
        history.push({ role: message.role || "assistant", content: text });
      }
      if (choices.length > 1) break; // continue the conversation with the first choice
    }
  }

  function renderError(status, body) {
    const error = (body && body.error) || {};
    const title = error.type ? `${error.type} (${status})` : `HTTP ${status}`;
    const bubble = addBubble("error", error.message || "The request failed.", "cm-message-failed");
    bubble.querySelector(".cm-message-role").textContent = title;
    if (error.param) bubble.appendChild(element("div", "cm-message-meta", `field: ${error.param}`));
  }

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
    return body;
  }

  function setBusy(value) {
    busy = value;
    sendButton.disabled = value;
    sendButton.textContent = value ? "Sending…" : "Send";
    transcript.classList.toggle("cm-busy", value);
  }

  async function send() {
    const text = input.value.trim();
    if (!text || busy) return;
    const userBubble = addBubble("user", text);
    history.push({ role: "user", content: text });
    input.value = "";
    setBusy(true);
    try {
      const response = await fetch(config.invokeUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
        body: JSON.stringify(buildRequest()),
      });
      let body = null;
      try {
        body = await response.json();
      } catch (parseError) {
        body = { error: { message: `The server answered ${response.status} without JSON.` } };
      }
      if (response.ok) {
        renderCompletion(body);
      } else {
        // The message was not answered: keep it out of the history so it can be resent.
        history.pop();
        userBubble.classList.add("cm-message-unsent");
        renderError(response.status, body);
        if (!input.value) input.value = text;
      }
    } catch (networkError) {
      history.pop();
      userBubble.classList.add("cm-message-unsent");
      renderError(0, { error: { type: "network error", message: String(networkError) } });
      if (!input.value) input.value = text;
    } finally {
      setBusy(false);
      input.focus();
    }
  }

  function clearConversation() {
    history = [];
    for (const node of [...transcript.querySelectorAll(".cm-message")]) node.remove();
    if (emptyNote) emptyNote.hidden = false;
    input.focus();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
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

  fillModels();
  fillVersions(true);
})();
