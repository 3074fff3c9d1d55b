// The file browser: buckets on the side; the folders (common prefixes by "/") and
// objects of one bucket, a page at a time, with upload by drag and drop or picker,
// download, delete, details and bucket settings.

import { api, objectUrl } from "./api.js";
import { renderBuckets } from "./buckets.js";
import { openBucketSettings } from "./bucket_settings.js";
import { openDetails } from "./details.js";
import { confirmDialog, promptDialog } from "./dialogs.js";
import { actionButton, errorText, h, icon, notify, replace } from "./dom.js";
import { baseName, formatBytes, formatDate, formatShortDate } from "./format.js";
import { browseHash } from "./routes.js";
import { droppedFiles, uploads } from "./upload.js";

/** Entries (folders and objects) per page. */
const PAGE_SIZE = 100;
/** Wait after an upload before refreshing, so a burst of uploads refreshes once. */
const REFRESH_DEBOUNCE_MS = 300;

function breadcrumbs(bucket, prefix) {
  const parts = prefix.split("/").filter(Boolean);
  const crumbs = [h("a", { href: browseHash(bucket), text: bucket })];
  parts.forEach((part, i) => {
    const path = `${parts.slice(0, i + 1).join("/")}/`;
    crumbs.push(h("span", { class: "sep", "aria-hidden": "true", text: "/" }));
    crumbs.push(
      i === parts.length - 1
        ? h("span", { "aria-current": "page", text: part })
        : h("a", { href: browseHash(bucket, path), text: part }),
    );
  });
  return h("nav", { class: "breadcrumbs", "aria-label": "Folder", id: "breadcrumbs" }, crumbs);
}

function folderRow(bucket, prefix) {
  return h(
    "tr",
    { class: "folder", dataset: { prefix } },
    h("td", { class: "name" }, h("a", { href: browseHash(bucket, prefix) }, icon("folder"), h("span", { text: baseName(prefix) }))),
    h("td", { class: "num muted", "data-label": "Size", text: "folder" }),
    h("td", { class: "when", "data-label": "Modified", text: "" }),
    h("td", { class: "actions" }),
  );
}

function objectRow(bucket, object, { onOpen, onDelete }) {
  const name = baseName(object.key);
  return h(
    "tr",
    { class: "object", dataset: { key: object.key } },
    h("td", { class: "name" }, h("button", { class: "link", onclick: () => onOpen(object.key), title: "Details" }, icon("file"), h("span", { text: name }))),
    h("td", { class: "num", "data-label": "Size", text: formatBytes(object.size) }),
    h("td", { class: "when", "data-label": "Modified", title: formatDate(object.lastModified), text: formatShortDate(object.lastModified) }),
    h(
      "td",
      { class: "actions" },
      h("a", { class: "button ghost small", href: objectUrl(bucket, object.key), download: name, "aria-label": `Download ${name}`, title: "Download", dataset: { action: "download" } }, icon("download")),
      actionButton(icon("trash", `Delete ${name}`), { class: "ghost small danger-text", title: "Delete", dataset: { action: "delete" } }, () => onDelete(object.key), `Deleting ${name}`),
    ),
  );
}

function emptyPane() {
  return h(
    "div",
    { class: "empty" },
    icon("bucket"),
    h("p", { text: "Choose a bucket on the left, or create one." }),
  );
}

/** Mount the browser for `bucket` at folder `prefix`; returns its stop function. */
export function mountBrowser(root, { bucket, prefix }) {
  const aside = h("aside", { class: "sidebar card" });
  const pane = h("div", { class: "pane" });
  root.replaceChildren(h("section", { class: "browser" }, aside, pane));
  let stopped = false;
  renderBuckets(aside, bucket).then((buckets) => {
    if (!stopped && bucket && !buckets.some((b) => b.name === bucket)) {
      replace(pane, h("p", { class: "form-error", role: "alert", text: `There is no bucket named ${bucket}.` }));
    }
  });
  if (!bucket) {
    pane.replaceChildren(emptyPane());
    return () => { stopped = true; };
  }

  const cursors = [""];
  const status = h("p", { class: "muted list-status", id: "list-status", "aria-live": "polite" });
  const tbody = h("tbody", {});
  const prev = h("button", { class: "secondary small", id: "page-prev", onclick: () => { cursors.pop(); load(); } }, "Previous");
  const next = h("button", { class: "secondary small", id: "page-next" }, "Next");
  const versioning = h("span", { class: "badge badge-info", id: "bucket-versioning" });
  let nextCursor = null;
  let deleted = false;
  next.addEventListener("click", () => {
    if (nextCursor) {
      cursors.push(nextCursor);
      load();
    }
  });

  async function load() {
    status.textContent = "Loading…";
    prev.disabled = true;
    next.disabled = true;
    let page;
    try {
      page = await api.list(bucket, { prefix, cursor: cursors[cursors.length - 1], limit: PAGE_SIZE });
    } catch (err) {
      if (stopped) return;
      status.textContent = "";
      replace(tbody, h("tr", {}, h("td", { colspan: 4, class: "form-error", role: "alert", text: `Cannot list ${bucket}: ${errorText(err)}` })));
      return;
    }
    if (stopped) return;
    const objects = page.objects.filter((o) => o.key !== prefix);
    replace(
      tbody,
      page.prefixes.map((p) => folderRow(bucket, p)),
      objects.map((o) => objectRow(bucket, o, { onOpen: open, onDelete: remove })),
    );
    if (!page.prefixes.length && !objects.length) {
      replace(tbody, h("tr", { class: "empty-row" }, h("td", { colspan: 4, text: cursors.length > 1 ? "No more entries." : "This folder is empty. Drop files here or use Upload." })));
    }
    nextCursor = page.nextCursor || null;
    prev.disabled = cursors.length <= 1;
    next.disabled = !nextCursor;
    const count = page.prefixes.length + objects.length;
    status.textContent = `Page ${cursors.length} · ${count} ${count === 1 ? "entry" : "entries"}${nextCursor ? " · more on the next page" : ""}`;
  }

  async function loadVersioning() {
    try {
      const info = await api.bucket(bucket);
      versioning.textContent = `versioning ${info.versioning.toLowerCase()}`;
    } catch {
      versioning.textContent = "";
    }
  }

  function open(key) {
    openDetails({ bucket, key, onChanged: () => load() });
  }

  async function remove(key) {
    const ok = await confirmDialog({
      title: `Delete ${baseName(key)}?`,
      message: versioning.textContent.includes("enabled")
        ? "Versioning is on: this adds a delete marker and older versions stay (see the object's versions)."
        : "The object will be deleted.",
      confirmLabel: "Delete",
      danger: true,
    });
    if (!ok) return;
    await api.deleteObject(bucket, key);
    notify(`${baseName(key)} deleted.`, "success");
    await load();
  }

  const picker = h("input", { type: "file", multiple: true, id: "file-input", class: "sr-only" });
  picker.addEventListener("change", () => {
    uploads.add([...picker.files].map((file) => ({ file, path: file.name })), bucket, prefix);
    picker.value = "";
  });
  let refreshTimer = null;
  uploads.onUploaded = (b, key) => {
    if (b !== bucket || !key.startsWith(prefix)) return;
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => { if (!stopped) load(); }, REFRESH_DEBOUNCE_MS);
  };

  const newFolder = async () => {
    const name = await promptDialog({
      title: "New folder",
      label: "Folder name",
      confirmLabel: "Open folder",
      hint: "Folders are key prefixes: the folder appears in the listing once it holds a file.",
    });
    if (name) window.location.hash = browseHash(bucket, `${prefix}${name.replace(/^\/+|\/+$/g, "")}/`);
  };
  const settings = () => openBucketSettings({
    bucket,
    onChanged: () => { if (!deleted && !stopped) { loadVersioning(); load(); } },
    onDeleted: () => { deleted = true; window.location.hash = browseHash(); },
  });

  const dropzone = h(
    "div",
    { class: "dropzone", id: "dropzone" },
    h(
      "table",
      { class: "table listing responsive", id: "listing" },
      h("thead", {}, h("tr", {}, h("th", { text: "Name" }), h("th", { class: "num", text: "Size" }), h("th", { class: "when", text: "Modified" }), h("th", { class: "actions", "aria-label": "Actions" }))),
      tbody,
    ),
    h("div", { class: "drop-hint", "aria-hidden": "true" }, icon("upload"), "Drop files or folders to upload them here"),
  );
  let depth = 0;
  dropzone.addEventListener("dragenter", (e) => { e.preventDefault(); depth += 1; dropzone.classList.add("dragging"); });
  dropzone.addEventListener("dragover", (e) => { e.preventDefault(); e.dataTransfer.dropEffect = "copy"; });
  dropzone.addEventListener("dragleave", () => { depth -= 1; if (depth <= 0) { depth = 0; dropzone.classList.remove("dragging"); } });
  dropzone.addEventListener("drop", async (e) => {
    e.preventDefault();
    depth = 0;
    dropzone.classList.remove("dragging");
    try {
      const items = await droppedFiles(e.dataTransfer);
      if (items.length) uploads.add(items, bucket, prefix);
    } catch (err) {
      notify(`Cannot read the dropped files: ${errorText(err)}`, "error");
    }
  });

  replace(
    pane,
    h(
      "div",
      { class: "pane-head" },
      h("div", { class: "where" }, breadcrumbs(bucket, prefix), versioning),
      h(
        "div",
        { class: "toolbar" },
        h("label", { class: "button primary", for: "file-input", id: "upload-button" }, icon("upload"), "Upload"),
        picker,
        h("button", { class: "secondary", onclick: newFolder }, icon("plus"), "New folder"),
        h("button", { class: "secondary", onclick: () => load(), "aria-label": "Refresh", title: "Refresh" }, icon("refresh")),
        h("button", { class: "secondary", onclick: settings, id: "bucket-settings", title: "Bucket settings" }, icon("settings"), "Settings"),
      ),
    ),
    uploads.element,
    dropzone,
    h("div", { class: "pager" }, status, h("div", { class: "row-actions" }, prev, next)),
  );
  loadVersioning();
  load();
  return () => {
    stopped = true;
    clearTimeout(refreshTimer);
    if (uploads.onUploaded) uploads.onUploaded = null;
  };
}
