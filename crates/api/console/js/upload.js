// Uploads: each file is POSTed with XMLHttpRequest and the File itself as the body, so
// the browser streams it from disk (nothing is read into the page) and reports
// progress per file. A few run at once; the rest wait their turn.

import { CONSOLE_HEADER, CONSOLE_HEADER_VALUE, UNAUTHENTICATED_EVENT, errorFrom, objectUrl } from "./api.js";
import { errorText, h, icon } from "./dom.js";
import { formatBytes } from "./format.js";

/** Files sent at the same time. */
const UPLOAD_CONCURRENCY = 3;
/** Most files taken from one drop of folders. */
export const MAX_DROP_FILES = 10000;
const PERCENT = 100;

/** [{file, path}] from a drop, walking dropped folders (up to MAX_DROP_FILES files). */
export async function droppedFiles(dataTransfer) {
  // Entries must be taken before the first await: the drop's data goes away after it.
  const entries = [...dataTransfer.items]
    .map((item) => (item.kind === "file" && item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
    .filter(Boolean);
  if (!entries.length) return [...dataTransfer.files].map((file) => ({ file, path: file.name }));
  const out = [];
  const walk = async (entry, dir) => {
    if (out.length >= MAX_DROP_FILES) return;
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      out.push({ file, path: dir + file.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${dir}${entry.name}/`);
      }
    }
  };
  for (const entry of entries) await walk(entry, "");
  return out;
}

class Upload {
  constructor(queue, bucket, key, file) {
    this.queue = queue;
    this.bucket = bucket;
    this.key = key;
    this.file = file;
    this.xhr = null;
    this.done = false;
    this.progress = h("progress", { max: PERCENT, "aria-label": `upload of ${key}` });
    this.progress.value = 0;
    this.percent = h("span", { class: "upload-percent", text: "0%" });
    this.status = h("span", { class: "upload-status", text: "waiting" });
    this.cancel = h("button", { class: "ghost small", "aria-label": `Cancel ${key}`, onclick: () => this.abort() }, icon("close"));
    this.row = h(
      "li",
      { class: "upload", dataset: { key, state: "waiting" } },
      h("div", { class: "upload-name" }, h("span", { class: "mono", text: key }), h("span", { class: "muted", text: formatBytes(file.size) })),
      h("div", { class: "upload-bar" }, this.progress, this.percent),
      h("div", { class: "upload-end" }, this.status, this.cancel),
    );
  }

  setProgress(fraction) {
    const pct = Math.min(PERCENT, Math.floor(fraction * PERCENT));
    this.progress.value = pct;
    this.percent.textContent = `${pct}%`;
  }

  finish(state, message) {
    this.done = true;
    this.row.dataset.state = state;
    this.status.textContent = message;
    this.status.title = message;
    this.cancel.hidden = true;
  }

  abort() {
    if (this.xhr) this.xhr.abort();
    else if (!this.done) {
      this.finish("cancelled", "cancelled");
      this.queue.settled(this, false);
    }
  }

  start() {
    const xhr = new XMLHttpRequest();
    this.xhr = xhr;
    this.row.dataset.state = "uploading";
    this.status.textContent = "uploading";
    xhr.open("POST", objectUrl(this.bucket, this.key));
    xhr.setRequestHeader(CONSOLE_HEADER, CONSOLE_HEADER_VALUE);
    xhr.setRequestHeader("Content-Type", this.file.type || "application/octet-stream");
    xhr.responseType = "text";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && event.total > 0) this.setProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", async () => {
      if (xhr.status === 201) {
        this.setProgress(1);
        this.finish("done", "uploaded");
        this.queue.settled(this, true);
        return;
      }
      if (xhr.status === 401) window.dispatchEvent(new CustomEvent(UNAUTHENTICATED_EVENT));
      const err = await errorFrom(new Response(xhr.responseText || null, { status: xhr.status, statusText: xhr.statusText }));
      this.finish("failed", errorText(err));
      this.queue.settled(this, false);
    });
    xhr.addEventListener("error", () => {
      this.finish("failed", "the connection failed");
      this.queue.settled(this, false);
    });
    xhr.addEventListener("abort", () => {
      this.finish("cancelled", "cancelled");
      this.queue.settled(this, false);
    });
    xhr.send(this.file);
  }
}

/** The page's upload list. It outlives folder changes, so uploads keep going. */
export class UploadQueue {
  constructor() {
    this.waiting = [];
    this.running = 0;
    this.list = h("ul", { class: "upload-list", id: "uploads" });
    this.clear = h("button", { class: "ghost small", onclick: () => this.clearFinished() }, "Clear finished");
    this.element = h(
      "section",
      { class: "uploads card", hidden: true, "aria-label": "Uploads" },
      h("div", { class: "uploads-head" }, h("h2", { text: "Uploads" }), this.clear),
      this.list,
    );
    /** Called with (bucket, key) after each successful upload. */
    this.onUploaded = null;
    window.addEventListener("beforeunload", (event) => {
      if (this.running || this.waiting.length) event.preventDefault();
    });
  }

  /** Queue `items` ([{file, path}]) for `bucket` under `prefix`. */
  add(items, bucket, prefix) {
    for (const { file, path } of items) {
      const upload = new Upload(this, bucket, prefix + path, file);
      this.list.append(upload.row);
      this.waiting.push(upload);
    }
    this.element.hidden = this.list.children.length === 0;
    this.pump();
  }

  pump() {
    while (this.running < UPLOAD_CONCURRENCY && this.waiting.length) {
      const next = this.waiting.shift();
      if (next.done) continue;
      this.running += 1;
      next.start();
    }
  }

  settled(upload, ok) {
    if (upload.xhr) this.running -= 1;
    else this.waiting = this.waiting.filter((u) => u !== upload);
    if (ok && this.onUploaded) this.onUploaded(upload.bucket, upload.key);
    this.pump();
  }

  clearFinished() {
    for (const row of [...this.list.children]) {
      if (!["waiting", "uploading"].includes(row.dataset.state)) row.remove();
    }
    this.element.hidden = this.list.children.length === 0;
  }
}

export const uploads = new UploadQueue();
