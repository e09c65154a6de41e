// spout's chat page. It streams POST /v1/chat/completions (fetch + ReadableStream, server-sent
// events numbered with `id:`), stops a reply with DELETE /v1/streams/{id}, resumes a dropped one
// with GET /v1/streams/{id} and Last-Event-ID, and keeps chats in the gateway's conversation
// store (header x-spout-conversation). Model output becomes DOM nodes through textContent and
// createElement only: no innerHTML, so no markup in a reply can run.
"use strict";

(() => {
  const SAFE_SCHEMES = new Set(["http:", "https:", "mailto:"]);
  const RESUME_ATTEMPTS = 6;
  const CONVERSATION_HEADER = "x-spout-conversation";

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ---- the gateway's API key ----------------------------------------------------------------
  // A gateway started with --keys wants one on every /v1 call. It is kept for this tab only
  // (sessionStorage) and sent as a bearer token; a 401 asks for it.

  const KEY_STORE = "spout-api-key";

  function apiKey() {
    try {
      return sessionStorage.getItem(KEY_STORE) || "";
    } catch {
      return "";
    }
  }

  function api(url, options = {}) {
    const headers = { ...(options.headers || {}) };
    const key = apiKey();
    if (key) headers.authorization = `Bearer ${key}`;
    return fetch(url, { ...options, headers }).then((response) => {
      if (response.status === 401) askForKey();
      return response;
    });
  }

  function askForKey() {
    const field = $("api-key");
    field.hidden = false;
    field.classList.add("wanted");
    status("this gateway needs an API key");
  }

  // ---- Markdown, as DOM nodes --------------------------------------------------------------
  // Paragraphs, headings, fenced code, lists, block quotes; inline code, **bold**, *italic*,
  // links whose address is http, https or mailto (anything else stays text). Text is only ever
  // added as Text nodes (append(string) / textContent).

  const ITEM = /^\s*([-*+]|\d{1,9}[.)])\s+(.*)$/;
  const INLINE = new RegExp(
    [
      /(`+)([\s\S]*?[^`])\1(?!`)/.source, // 1, 2: code span
      /\*\*(\S(?:[\s\S]*?\S)?)\*\*/.source, // 3: bold
      /__(\S(?:[\s\S]*?\S)?)__/.source, // 4: bold
      /\*([^*\s](?:[^*]*[^*\s])?)\*/.source, // 5: italic
      /\b_([^_\s](?:[^_]*[^_\s])?)_\b/.source, // 6: italic
      /\[([^\]]+)\]\(\s*<?([^()\s<>]+)>?(?:\s+"[^"]*")?\s*\)/.source, // 7, 8: link
      /(https?:\/\/[^\s<>()]*[^\s<>().,;:!?'"*_])/.source, // 9: a bare address
    ].join("|"),
  );

  function renderMarkdown(source, into) {
    into.replaceChildren();
    const lines = source.replace(/\r\n?/g, "\n").split("\n");
    let paragraph = [];
    const flush = () => {
      if (!paragraph.length) return;
      const p = el("p");
      paragraph.forEach((line, n) => {
        if (n) p.append(el("br"));
        inline(line, p);
      });
      into.append(p);
      paragraph = [];
    };
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      const fence = line.match(/^\s*(`{3,}|~{3,})\s*([\w+#.-]*)/);
      if (fence) {
        flush();
        const code = [];
        i++;
        while (i < lines.length && !lines[i].trim().startsWith(fence[1])) code.push(lines[i++]);
        i++; // the closing fence; a reply still streaming may not have sent it yet
        const pre = el("pre");
        const block = el("code", null, code.join("\n"));
        if (fence[2]) block.dataset.language = fence[2];
        pre.append(block);
        into.append(pre);
        continue;
      }
      const heading = line.match(/^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/);
      if (heading) {
        flush();
        const h = el("h" + heading[1].length);
        inline(heading[2], h);
        into.append(h);
        i++;
        continue;
      }
      const item = line.match(ITEM);
      if (item) {
        flush();
        const ordered = /\d/.test(item[1]);
        const list = el(ordered ? "ol" : "ul");
        const start = parseInt(item[1], 10);
        if (ordered && start !== 1) list.start = start;
        while (i < lines.length) {
          const next = lines[i].match(ITEM);
          if (!next || /\d/.test(next[1]) !== ordered) break;
          const li = el("li");
          inline(next[2], li);
          i++;
          while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !ITEM.test(lines[i])) {
            li.append(el("br"));
            inline(lines[i++].trim(), li);
          }
          list.append(li);
        }
        into.append(list);
        continue;
      }
      if (/^\s{0,3}>/.test(line)) {
        flush();
        const quoted = [];
        while (i < lines.length && /^\s{0,3}>/.test(lines[i])) {
          quoted.push(lines[i++].replace(/^\s{0,3}>\s?/, ""));
        }
        const quote = el("blockquote");
        renderMarkdown(quoted.join("\n"), quote);
        into.append(quote);
        continue;
      }
      if (!line.trim()) flush();
      else paragraph.push(line);
      i++;
    }
    flush();
  }

  function inline(text, into) {
    while (text) {
      const m = INLINE.exec(text);
      if (!m) {
        into.append(text);
        return;
      }
      if (m.index) into.append(text.slice(0, m.index));
      if (m[1] !== undefined) {
        into.append(el("code", null, m[2]));
      } else if (m[3] !== undefined || m[4] !== undefined) {
        const strong = el("strong");
        inline(m[3] ?? m[4], strong);
        into.append(strong);
      } else if (m[5] !== undefined || m[6] !== undefined) {
        const em = el("em");
        inline(m[5] ?? m[6], em);
        into.append(em);
      } else if (m[7] !== undefined) {
        link(m[7], m[8], m[0], into);
      } else {
        link(null, m[9], m[0], into);
      }
      text = text.slice(m.index + m[0].length);
    }
  }

  // An absolute http, https or mailto address, or null: javascript:, data:, vbscript:,
  // relative and unparsable addresses are not links.
  function safeHref(address) {
    let url;
    try {
      url = new URL(address);
    } catch {
      return null;
    }
    return SAFE_SCHEMES.has(url.protocol) ? url.href : null;
  }

  function link(label, address, source, into) {
    const href = safeHref(address);
    if (href === null) {
      into.append(source); // shown as the text it was, not followed
      return;
    }
    const a = el("a");
    a.href = href;
    a.rel = "noopener noreferrer nofollow";
    a.target = "_blank";
    if (label === null) a.textContent = address;
    else inline(label, a);
    into.append(a);
  }

  // ---- messages ---------------------------------------------------------------------------

  function addMessage(role) {
    const box = el("div", "message " + role);
    box.dataset.role = role;
    box.append(el("div", "role", role === "user" ? "You" : "Assistant"));
    const gallery = el("div", "images");
    const body = el("div", "body");
    const note = el("div", "note");
    // A user's images above the words they come with; a model's images after its words.
    if (role === "user") box.append(gallery, body, note);
    else box.append(body, gallery, note);
    $("messages").append(box);
    return {
      box,
      images(urls) {
        if (urls.length === gallery.childElementCount) return;
        gallery.replaceChildren(
          ...urls.map((url, i) => image(url, role === "user" ? "thumb" : "answer", `image ${i + 1}`)),
        );
      },
      set(text) {
        box.dataset.text = text;
        if (role === "assistant") renderMarkdown(text, body);
        else body.textContent = text;
        const messages = $("messages");
        messages.scrollTop = messages.scrollHeight;
      },
      state(name, why) {
        box.dataset.state = name;
        note.textContent = why || "";
      },
    };
  }

  // An image shown on the page: only a data: URL of an image type, which the page made from a
  // file the user picked or the gateway sent (the CSP loads images from nowhere else).
  function isImageData(url) {
    return typeof url === "string" && /^data:image\/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=]*$/.test(url);
  }

  function image(url, className, alt) {
    const img = document.createElement("img");
    img.className = className;
    img.alt = alt;
    img.src = url;
    return img;
  }

  // The images of a message's content: its image_url parts' data URLs.
  function imagesOf(content) {
    if (!Array.isArray(content)) return [];
    return content
      .map((part) => part && part.type === "image_url" && part.image_url && part.image_url.url)
      .filter(isImageData);
  }

  // What an assistant turn shows: its text, then its refusal (OpenAI keeps the two apart).
  function shown(text, refusal) {
    return text && refusal ? `${text}\n\n${refusal}` : text || refusal || "";
  }

  function textOf(content) {
    if (typeof content === "string") return content;
    if (Array.isArray(content)) {
      return content.map((part) => (part && typeof part.text === "string" ? part.text : "")).join("");
    }
    return "";
  }

  function status(text) {
    $("status").textContent = text;
  }

  // ---- streaming --------------------------------------------------------------------------

  const state = { conversation: "new", history: [], current: null, pending: [] };

  // One server-sent event into the reply: "done", "error", or null to go on.
  function takeEvent(block, reply) {
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") id = value;
      else if (field === "data") data.push(value);
    }
    if (id !== null && /^\d+$/.test(id)) {
      const number = Number(id);
      if (number <= reply.lastId) return null; // had it already
      reply.lastId = number;
    }
    if (!data.length) return null;
    const payload = data.join("\n");
    if (payload === "[DONE]") return "done";
    let chunk;
    try {
      chunk = JSON.parse(payload);
    } catch {
      return null;
    }
    if (chunk.error) {
      reply.error = chunk.error.message || "the stream failed";
      return "error";
    }
    for (const choice of chunk.choices || []) {
      const piece = choice.delta && choice.delta.content;
      if (typeof piece === "string") reply.text += piece;
      const refused = choice.delta && choice.delta.refusal;
      if (typeof refused === "string") reply.refusal += refused;
      // Images the model answered with (the gateway sends them as OpenRouter does).
      for (const entry of (choice.delta && choice.delta.images) || []) {
        const url = entry && entry.image_url && entry.image_url.url;
        if (isImageData(url)) reply.images.push(url);
      }
    }
    return null;
  }

  // A response's events into the reply, shown as they come. How it ended: "done", "error",
  // "stopped" (the stop button), or "dropped" (the connection ended or broke before the end).
  async function readEvents(response, reply) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return reply.stopped ? "stopped" : "dropped";
        buffer = (buffer + value).replace(/\r\n?/g, "\n");
        let outcome = null;
        let end;
        while (!outcome && (end = buffer.indexOf("\n\n")) >= 0) {
          outcome = takeEvent(buffer.slice(0, end), reply);
          buffer = buffer.slice(end + 2);
        }
        reply.show();
        if (outcome) return outcome;
      }
    } catch {
      return reply.stopped ? "stopped" : "dropped";
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      return (body.error && body.error.message) || `HTTP ${response.status}`;
    } catch {
      return `HTTP ${response.status}`;
    }
  }

  function keepConversation(response) {
    const id = response.headers.get(CONVERSATION_HEADER);
    if (id) state.conversation = id;
  }

  // The reply streaming now, kept for this tab so that a reload picks it up again.
  const LIVE_STORE = "spout-live-reply";

  function remember(live) {
    try {
      if (live) sessionStorage.setItem(LIVE_STORE, JSON.stringify(live));
      else sessionStorage.removeItem(LIVE_STORE);
    } catch {
      // storage refused: a reload then loses the reply, nothing else
    }
  }

  function newReply(view) {
    const reply = {
      text: "",
      refusal: "",
      images: [],
      lastId: 0,
      streamId: null,
      error: null,
      stopped: false,
      controller: new AbortController(),
      show: () => {
        view.set(shown(reply.text, reply.refusal));
        view.images(reply.images);
      },
    };
    state.current = reply;
    $("send").disabled = true;
    $("stop").disabled = false;
    status("streaming…");
    return reply;
  }

  async function send(prompt) {
    const user = addMessage("user");
    user.set(prompt);
    // Attached images go as OpenAI image_url parts after the text (the gateway gives each
    // upstream its own shape).
    const images = state.pending.map((attached) => attached.url);
    user.images(images);
    let content = prompt;
    if (images.length) {
      content = [
        ...(prompt ? [{ type: "text", text: prompt }] : []),
        ...images.map((url) => ({ type: "image_url", image_url: { url } })),
      ];
    }
    state.pending = [];
    showPending();
    state.history.push({ role: "user", content });
    const view = addMessage("assistant");
    view.state("streaming");
    const reply = newReply(view);
    let outcome;
    try {
      const response = await api("/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json", [CONVERSATION_HEADER]: state.conversation },
        body: JSON.stringify({ model: $("model").value, messages: state.history, stream: true }),
        signal: reply.controller.signal,
      });
      keepConversation(response);
      if (!response.ok) {
        reply.error = await errorMessage(response);
        outcome = "error";
      } else {
        reply.streamId = response.headers.get("x-spout-stream-id");
        $("messages").dataset.streamId = reply.streamId || "";
        remember({
          streamId: reply.streamId,
          conversation: state.conversation,
          history: state.history,
          model: $("model").value,
        });
        outcome = await readEvents(response, reply);
      }
    } catch (error) {
      outcome = reply.stopped ? "stopped" : "error";
      reply.error = String(error);
    }
    await finish(view, reply, outcome);
  }

  // The page was reloaded while a reply streamed: show the chat again and follow the reply's
  // stream from its first event (the gateway keeps it for the resume window).
  async function resumeAfterReload(live) {
    state.conversation = live.conversation || "new";
    state.history = Array.isArray(live.history) ? live.history : [];
    for (const message of state.history) {
      if (message.role !== "user" && message.role !== "assistant") continue;
      const view = addMessage(message.role === "user" ? "user" : "assistant");
      view.set(shown(textOf(message.content), message.refusal));
      view.images(imagesOf(message.content));
      if (message.role !== "user") view.state("done");
    }
    const view = addMessage("assistant");
    const reply = newReply(view);
    reply.streamId = live.streamId;
    $("messages").dataset.streamId = reply.streamId || "";
    await finish(view, reply, "dropped");
  }

  // Follow a dropped reply again as long as it moves on, then show how it ended.
  async function finish(view, reply, outcome) {

    // A connection that broke mid-answer: follow the stream again from the last event seen.
    let attempt = 0;
    while (outcome === "dropped" && reply.streamId && !reply.stopped && attempt < RESUME_ATTEMPTS) {
      attempt++;
      view.state("resuming", `connection lost, resuming (attempt ${attempt} of ${RESUME_ATTEMPTS})…`);
      status("resuming…");
      await sleep(Math.min(200 * 2 ** (attempt - 1), 4000));
      if (reply.stopped) break;
      try {
        const response = await api(`/v1/streams/${encodeURIComponent(reply.streamId)}`, {
          headers: { "last-event-id": String(reply.lastId) },
          cache: "no-store",
          signal: reply.controller.signal,
        });
        if (response.status === 404 || response.status === 410) {
          reply.error = await errorMessage(response);
          outcome = "error";
          break;
        }
        if (!response.ok) continue;
        view.state("streaming");
        status("streaming…");
        const before = reply.lastId;
        outcome = await readEvents(response, reply);
        if (reply.lastId > before) attempt = 0; // it moved on: a fresh set of attempts
      } catch {
        if (reply.stopped) outcome = "stopped";
      }
    }
    if (reply.stopped) outcome = "stopped";

    view.set(shown(reply.text, reply.refusal));
    view.images(reply.images);
    if (outcome === "done") view.state("done", reply.refusal ? "the model refused" : "");
    else if (outcome === "stopped") view.state("stopped", "stopped");
    else if (outcome === "dropped") view.state("error", "the connection was lost");
    else view.state("error", reply.error || "the stream failed");
    if (reply.refusal) {
      state.history.push({ role: "assistant", content: reply.text, refusal: reply.refusal });
    } else if (reply.text) {
      state.history.push({ role: "assistant", content: reply.text });
    }
    remember(null);
    state.current = null;
    $("send").disabled = false;
    $("stop").disabled = true;
    status(outcome === "done" ? "" : outcome === "stopped" ? "stopped" : "failed");
    await refreshConversations();
  }

  // Stop: cancel upstream (the gateway closes its connection to the model), then stop reading.
  async function stop() {
    const reply = state.current;
    if (!reply || reply.stopped) return;
    reply.stopped = true;
    $("stop").disabled = true;
    if (reply.streamId) {
      try {
        await api(`/v1/streams/${encodeURIComponent(reply.streamId)}`, { method: "DELETE" });
      } catch {
        // the stream is gone already, or the gateway is: reading stops either way
      }
    }
    reply.controller.abort();
  }

  // ---- models and conversations -----------------------------------------------------------

  async function loadModels() {
    const select = $("model");
    try {
      const response = await api("/v1/models", { cache: "no-store" });
      if (!response.ok) return;
      const body = await response.json();
      select.replaceChildren();
      for (const model of body.data || []) {
        const option = el("option", null, model.id);
        option.value = model.id;
        select.append(option);
      }
    } catch {
      status("cannot list the models");
    }
  }

  function when(seconds) {
    return new Date(seconds * 1000).toLocaleString(undefined, {
      dateStyle: "short",
      timeStyle: "short",
    });
  }

  async function refreshConversations() {
    let body;
    try {
      const response = await api("/v1/conversations?limit=100", { cache: "no-store" });
      if (!response.ok) return;
      body = await response.json();
    } catch {
      return;
    }
    const list = $("conversations");
    list.replaceChildren();
    for (const conversation of body.data || []) {
      const button = el("button");
      button.type = "button";
      button.dataset.id = conversation.id;
      if (conversation.id === state.conversation) button.classList.add("current");
      const model = conversation.model || conversation.models[conversation.models.length - 1] || "";
      button.append(
        el("span", "title", conversation.title || "Untitled"),
        el("span", "meta", `${model} · ${when(conversation.updated_at)}`),
      );
      button.addEventListener("click", () => openConversation(conversation.id));
      const item = el("li");
      item.append(button);
      list.append(item);
    }
  }

  async function openConversation(id) {
    if (state.current) return; // a reply is streaming: stop it first
    let conversation;
    try {
      const response = await api(`/v1/conversations/${encodeURIComponent(id)}`, {
        cache: "no-store",
      });
      if (!response.ok) {
        status(await errorMessage(response));
        return;
      }
      conversation = await response.json();
    } catch (error) {
      status(String(error));
      return;
    }
    state.conversation = conversation.id;
    state.history = [];
    $("messages").replaceChildren();
    if (conversation.system_prompt) {
      state.history.push({ role: "system", content: conversation.system_prompt });
    }
    for (const message of conversation.messages) {
      if (message.role !== "user" && message.role !== "assistant") continue;
      const text = textOf(message.content);
      const images = imagesOf(message.content);
      const refusal = typeof message.refusal === "string" ? message.refusal : "";
      // A user's images go with the conversation's next request again, as they were sent.
      const content = message.role === "user" && images.length ? message.content : text;
      const kept = { role: message.role, content };
      state.history.push(refusal ? { ...kept, refusal } : kept);
      const view = addMessage(message.role);
      view.set(shown(text, refusal));
      view.images(images);
      if (message.incomplete) view.state("stopped", `incomplete: ${message.incomplete}`);
      else view.state("done", refusal ? "the model refused" : "");
    }
    const select = $("model");
    if (conversation.model && [...select.options].some((o) => o.value === conversation.model)) {
      select.value = conversation.model;
    }
    status("");
    for (const button of $("conversations").querySelectorAll("button")) {
      button.classList.toggle("current", button.dataset.id === conversation.id);
    }
  }

  function newChat() {
    if (state.current) return;
    state.conversation = "new";
    state.history = [];
    $("messages").replaceChildren();
    for (const button of $("conversations").querySelectorAll("button")) {
      button.classList.remove("current");
    }
    $("prompt").focus();
  }

  function submit(event) {
    event.preventDefault();
    const prompt = $("prompt").value.trim();
    if ((!prompt && !state.pending.length) || state.current) return;
    $("prompt").value = "";
    send(prompt);
  }

  // ---- attachments ------------------------------------------------------------------------

  // The images waiting to go with the next prompt, each with a button that takes it off.
  function showPending() {
    $("attachments").replaceChildren(
      ...state.pending.map((attached, i) => {
        const figure = el("figure");
        const remove = el("button", "remove", "×");
        remove.type = "button";
        remove.title = `Remove ${attached.name}`;
        remove.setAttribute("aria-label", `Remove ${attached.name}`);
        remove.addEventListener("click", () => {
          state.pending.splice(i, 1);
          showPending();
        });
        figure.append(image(attached.url, "thumb", attached.name), remove);
        return figure;
      }),
    );
  }

  function readAsDataURL(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  // Files picked or dropped: images join the next prompt; anything else is refused, named.
  async function attach(files) {
    const refused = [];
    for (const file of files) {
      if (!/^image\/(png|jpeg|gif|webp)$/.test(file.type)) {
        refused.push(file.name);
        continue;
      }
      try {
        const url = await readAsDataURL(file);
        if (isImageData(url)) state.pending.push({ name: file.name, url });
        else refused.push(file.name);
      } catch {
        refused.push(file.name);
      }
    }
    showPending();
    status(refused.length ? `not an image (PNG, JPEG, GIF or WebP): ${refused.join(", ")}` : "");
  }

  function acceptDrops(target) {
    const dragging = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
    target.addEventListener("dragover", (event) => {
      if (!dragging(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      $("composer").classList.add("dropping");
    });
    target.addEventListener("dragleave", () => $("composer").classList.remove("dropping"));
    target.addEventListener("drop", (event) => {
      $("composer").classList.remove("dropping");
      if (!dragging(event)) return;
      event.preventDefault();
      attach([...event.dataTransfer.files]);
    });
  }

  async function start() {
    $("composer").addEventListener("submit", submit);
    $("prompt").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) submit(event);
    });
    $("stop").addEventListener("click", stop);
    $("new-chat").addEventListener("click", newChat);
    const picker = $("attach-file");
    $("attach").addEventListener("click", () => picker.click());
    picker.addEventListener("change", () => {
      attach([...picker.files]);
      picker.value = "";
    });
    acceptDrops(document.querySelector("main"));
    const keyField = $("api-key");
    keyField.hidden = !apiKey();
    keyField.addEventListener("change", () => {
      try {
        sessionStorage.setItem(KEY_STORE, keyField.value.trim());
      } catch {
        // storage refused (a private window): the key is not kept
      }
      keyField.value = "";
      keyField.placeholder = apiKey() ? "API key set" : "API key";
      keyField.classList.remove("wanted");
      status("");
      loadModels();
      refreshConversations();
    });
    if (apiKey()) keyField.placeholder = "API key set";
    await Promise.all([loadModels(), refreshConversations()]);
    document.body.dataset.ready = "true";
    let live = null;
    try {
      live = JSON.parse(sessionStorage.getItem(LIVE_STORE) || "null");
    } catch {
      live = null;
    }
    if (live && live.streamId) {
      const select = $("model");
      if ([...select.options].some((o) => o.value === live.model)) select.value = live.model;
      await resumeAfterReload(live);
    }
  }

  start();
})();
