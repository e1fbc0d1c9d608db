// omnivec search page: plain JavaScript against the /v1 API, no build step, no third-party code.
"use strict";

const KEY_STORAGE = "omnivec.apiKey"; // sessionStorage: this tab only, gone when it closes
const $ = (id) => document.getElementById(id);
const state = { collection: "", query: null, objectUrls: [], modalities: [], keyPrompt: null, searchSeq: 0 };

// ---- API calls: the key, one prompt for many concurrent 401s, errors with the server's message ----

class ApiError extends Error {}

function apiKey() { return sessionStorage.getItem(KEY_STORAGE); }

function askKey(reason) {
  if (state.keyPrompt) return state.keyPrompt; // every request that got a 401 meanwhile waits for the same answer
  const dialog = $("key-dialog");
  $("key-why").textContent = reason;
  $("key-input").value = "";
  state.keyPrompt = new Promise((resolve) => {
    const done = (key) => {
      dialog.removeEventListener("close", onClose);
      state.keyPrompt = null;
      if (key) { sessionStorage.setItem(KEY_STORAGE, key); $("forget-key").hidden = false; }
      resolve(Boolean(key));
    };
    const onClose = () => done(dialog.returnValue === "ok" ? $("key-input").value.trim() : "");
    dialog.addEventListener("close", onClose);
    $("key-cancel").onclick = () => dialog.close("cancel");
    dialog.showModal();
  });
  return state.keyPrompt;
}

async function api(path, options = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = new Headers(options.headers || {});
    const key = apiKey();
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401 || attempt >= 2) return response;
    const reason = key ? "The API key was not accepted; enter a valid one." : "This server needs an API key.";
    if (key) sessionStorage.removeItem(KEY_STORAGE);
    if (!(await askKey(reason))) return response;
  }
}

async function apiJson(path, options) {
  const response = await api(path, options);
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `${response.status} ${response.statusText}`;
    throw new ApiError(message);
  }
  return body;
}

function setStatus(id, text, isError = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", isError);
}

const enc = encodeURIComponent;

// ---- collections and model ------------------------------------------------------------------

async function loadModel() {
  try {
    const info = await apiJson("/v1/models");
    const model = (info.data && info.data[0]) || info;
    state.modalities = model.modalities || [];
    $("model").textContent = `${model.id || model.model || model.name || "model"} · ${state.modalities.join(", ")}`;
  } catch (err) {
    $("model").textContent = "";
  }
}

async function loadCollections() {
  const select = $("collection");
  try {
    const { data } = await apiJson("/v1/collections");
    select.replaceChildren(...data.map((c) => new Option(c.name, c.name)));
    const remembered = sessionStorage.getItem("omnivec.collection");
    const pick = data.find((c) => c.name === remembered) || data.find((c) => c.name === "demo") || data[0];
    if (!pick) {
      setStatus("search-status", "No collections yet: create one and index items (omnivec index DIR --collection NAME).");
      return;
    }
    select.value = pick.name;
    state.collection = pick.name;
    state.collections = Object.fromEntries(data.map((c) => [c.name, c]));
    showCollectionInfo();
  } catch (err) {
    setStatus("search-status", `Could not list collections: ${err.message}`, true);
  }
}

function showCollectionInfo() {
  const c = (state.collections || {})[state.collection];
  $("collection-info").textContent = c ? `${c.count} items${c.matches_model ? "" : " · other model's space"}` : "";
}

// ---- search ---------------------------------------------------------------------------------

function selectedModality() { return document.querySelector('input[name="modality"]:checked').value || null; }

function searchParams() {
  const params = { top_k: Number($("top-k").value) };
  const modality = selectedModality();
  if (modality) params.modality = modality;
  return params;
}

async function runSearch() {
  if (!state.query || !state.collection) return;
  const seq = ++state.searchSeq;
  const path = `/v1/collections/${enc(state.collection)}/search`;
  let options;
  if (state.query.text !== undefined) {
    options = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ query: { text: state.query.text }, ...searchParams() }) };
  } else {
    const form = new FormData();
    form.append(state.query.kind, state.query.file, state.query.file.name || state.query.kind);
    form.append("params", JSON.stringify(searchParams()));
    options = { method: "POST", body: form };
  }
  setStatus("search-status", "Searching…");
  try {
    const started = performance.now();
    const body = await apiJson(path, options);
    if (seq !== state.searchSeq) return; // a newer search finished first
    renderResults(body.results);
    const ms = Math.round(performance.now() - started);
    setStatus("search-status", body.results.length ? `${body.results.length} result${body.results.length === 1 ? "" : "s"} in ${ms} ms` : "No results.");
  } catch (err) {
    if (seq === state.searchSeq) setStatus("search-status", err.message, true);
  }
}

function releaseObjectUrls() {
  state.objectUrls.forEach((u) => URL.revokeObjectURL(u));
  state.objectUrls = [];
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function describe(hit) {
  const p = hit.payload || {};
  return String(p.caption || p.label || p.title || p.name || p.text || hit.id);
}

function renderResults(results) {
  releaseObjectUrls();
  const list = $("results");
  list.replaceChildren(...results.map((hit, i) => {
    const figure = el("figure", { "aria-label": `${hit.modality || "item"} result ${i + 1}` }, el("span", { class: "none", text: "loading…" }));
    const fill = el("div", { class: "fill" });
    fill.style.width = `${Math.max(0, hit.score) * 100}%`;
    const payload = el("dl", { class: "payload" });
    for (const [k, v] of Object.entries(hit.payload || {})) {
      payload.append(el("dt", { text: k }), el("dd", { text: typeof v === "string" ? v : JSON.stringify(v) }));
    }
    const card = el("li", { class: "card", "data-modality": hit.modality || "", "data-id": hit.id },
      figure,
      el("div", { class: "meta" },
        el("div", { class: "score", title: `cosine similarity ${hit.score.toFixed(4)}` },
          el("span", { class: `badge ${hit.modality || ""}`, text: hit.modality || "?" }),
          el("span", { class: "track", role: "presentation" }, fill),
          el("span", { class: "num", text: hit.score.toFixed(3) })),
        el("div", { class: "id", title: hit.id, text: hit.id }),
        payload));
    loadMedia(hit, figure);
    return card;
  }));
}

async function loadMedia(hit, figure) {
  const collection = state.collection;
  const url = `/v1/collections/${enc(collection)}/media/${hit.id.split("/").map(enc).join("/")}?redirect=false`;
  let shown;
  try {
    const response = await api(url);
    if (response.status === 404) {
      shown = el("span", { class: "none", text: hit.modality === "text" ? describe(hit) : "no preview kept" });
    } else if (!response.ok) {
      shown = el("span", { class: "none", text: `preview failed (${response.status})` });
    } else if ((response.headers.get("content-type") || "").startsWith("application/json")) {
      const { url: source } = await response.json(); // a URL item: the browser loads the URL itself
      shown = el("div", { class: "from-url" }, mediaElement(hit, source, source),
        el("a", { href: source, target: "_blank", rel: "noopener noreferrer", class: "source", text: source }));
    } else if (hit.modality === "text") {
      shown = el("blockquote", { text: await response.text() });
    } else {
      const objectUrl = URL.createObjectURL(await response.blob());
      state.objectUrls.push(objectUrl);
      shown = mediaElement(hit, objectUrl);
    }
  } catch (err) {
    shown = el("span", { class: "none", text: "preview failed" });
  }
  figure.replaceChildren(shown);
}

function mediaElement(hit, src, sourceUrl) {
  const label = describe(hit);
  if (hit.modality === "audio") {
    const audio = el("audio", { controls: "", preload: "metadata", src, "aria-label": `play ${label}` });
    return el("div", { class: "sound" }, el("span", { class: "glyph", "aria-hidden": "true", text: "♪" }), el("span", { text: label }), audio);
  }
  const img = el("img", { src, alt: label, loading: "lazy" });
  if (sourceUrl) img.title = sourceUrl;
  return img;
}

// ---- files: dropped, pasted or chosen -------------------------------------------------------

function fileKind(file) {
  if (file.type.startsWith("audio/")) return "audio";
  if (file.type.startsWith("image/")) return "image";
  return /\.(wav|flac|ogg|opus|mp3|oga)$/i.test(file.name) ? "audio" : "image";
}

function showQueryFile(boxId, file, kind) {
  const box = $(boxId);
  box.hidden = false;
  const clear = el("button", { type: "button", text: "Clear" });
  const url = URL.createObjectURL(file);
  const preview = kind === "image" ? el("img", { src: url, alt: `query image ${file.name}` }) : el("audio", { controls: "", src: url, "aria-label": `query audio ${file.name}` });
  box.replaceChildren(preview, el("span", { text: file.name || `pasted ${kind}` }), clear);
  clear.onclick = () => { box.hidden = true; box.replaceChildren(); URL.revokeObjectURL(url); if (boxId === "classify-query-file") state.classifyFile = null; };
}

function useFile(target, file) {
  if (!file) return;
  const kind = fileKind(file);
  if (target === "classify") {
    state.classifyFile = { file, kind };
    showQueryFile("classify-query-file", file, kind);
    return;
  }
  state.query = { kind, file };
  $("q").value = "";
  showQueryFile("search-query-file", file, kind);
  runSearch();
}

function wireDrop(zoneId, inputId, target) {
  const zone = $(zoneId);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    useFile(target, e.dataTransfer.files[0]);
  });
  $(inputId).addEventListener("change", (e) => { useFile(target, e.target.files[0]); e.target.value = ""; });
}

document.addEventListener("paste", (e) => {
  const file = [...(e.clipboardData?.files || [])][0];
  if (!file) return; // pasted text goes into the focused field as usual
  e.preventDefault();
  useFile($("panel-classify").hidden ? "search" : "classify", file);
});

// ---- classify -------------------------------------------------------------------------------

function splitList(text, commas) {
  const parts = commas && !text.includes("\n") ? text.split(",") : text.split("\n");
  return parts.map((s) => s.trim()).filter(Boolean);
}

async function runClassify() {
  const labels = splitList($("labels").value, true);
  const templates = splitList($("templates").value, false);
  const params = { labels, top_k: Math.max(1, labels.length), multi_label: $("multi-label").checked };
  if (templates.length) params.templates = templates;
  const text = $("classify-text").value.trim();
  let options;
  if (state.classifyFile) {
    const form = new FormData();
    form.append("files", state.classifyFile.file, state.classifyFile.file.name || state.classifyFile.kind);
    form.append("params", JSON.stringify(params));
    options = { method: "POST", body: form };
  } else if (text) {
    options = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ...params, inputs: [{ text }] }) };
  } else {
    setStatus("classify-status", "Give a text, or drop or choose an image or audio file to classify.", true);
    return;
  }
  setStatus("classify-status", "Classifying…");
  try {
    const body = await apiJson("/v1/classify", options);
    renderBars(body);
    setStatus("classify-status", `Scored with ${body.scoring} (${body.model}).`);
  } catch (err) {
    setStatus("classify-status", err.message, true);
  }
}

function renderBars(body) {
  const what = state.classifyFile ? state.classifyFile.file.name || state.classifyFile.kind : "the text";
  $("classify-results").replaceChildren(...body.results.map((result) => {
    const rows = result.labels.map((s) => {
      const fill = el("div", { class: "fill" });
      fill.style.width = `${(s.score * 100).toFixed(1)}%`;
      return el("li", { title: `cosine ${s.cosine.toFixed(4)}` },
        el("span", { class: "label", text: s.label }),
        el("span", { class: "track", role: "meter", "aria-valuemin": "0", "aria-valuemax": "1", "aria-valuenow": s.score.toFixed(4), "aria-label": s.label }, fill),
        el("span", { class: "num", text: `${(s.score * 100).toFixed(1)} %` }));
    });
    return el("section", {}, el("h3", { text: `Labels for ${what}` }), el("ol", {}, ...rows));
  }));
}

// ---- tabs -----------------------------------------------------------------------------------

function selectTab(tab) {
  for (const t of document.querySelectorAll('[role="tab"]')) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
}

function wireTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (e) => {
      const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      next.focus();
      selectTab(next);
    });
  });
}

// ---- start ----------------------------------------------------------------------------------

function start() {
  wireTabs();
  wireDrop("drop", "search-file", "search");
  wireDrop("classify-drop", "classify-file", "classify");
  $("forget-key").hidden = !apiKey();
  $("forget-key").onclick = () => { sessionStorage.removeItem(KEY_STORAGE); $("forget-key").hidden = true; };
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("q").value.trim();
    if (!text) { setStatus("search-status", "Type something to search for, or drop a file.", true); return; }
    state.query = { text };
    $("search-query-file").hidden = true;
    runSearch();
  });
  $("classify-form").addEventListener("submit", (e) => { e.preventDefault(); runClassify(); });
  for (const radio of document.querySelectorAll('input[name="modality"]')) radio.addEventListener("change", runSearch);
  $("top-k").addEventListener("change", runSearch);
  $("collection").addEventListener("change", (e) => {
    state.collection = e.target.value;
    sessionStorage.setItem("omnivec.collection", state.collection);
    showCollectionInfo();
    runSearch();
  });
  loadCollections().then(loadModel);
}

document.addEventListener("DOMContentLoaded", start);
