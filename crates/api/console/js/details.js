// Object details: properties, user metadata, editable tags and the version history with
// download, restore and delete of each version.

import { api, objectUrl } from "./api.js";
import { drawer, confirmDialog } from "./dialogs.js";
import { actionButton, errorText, h, icon, notify, replace } from "./dom.js";
import { baseName, formatBytes, formatDate, formatShortDate, shortId } from "./format.js";

/** The server's limits on tags (S3's). */
const TAGS_MAX = 10;
const TAG_KEY_MAX_CHARS = 128;
const TAG_VALUE_MAX_CHARS = 256;

function properties(info) {
  const rows = [
    ["Size", `${formatBytes(info.size)} (${info.size.toLocaleString()} bytes)`],
    ["Last modified", formatDate(info.lastModified)],
    ["Content type", info.contentType],
    ["ETag", info.etag],
    ["SHA-256", info.sha256],
    ["Version", info.versionId],
  ];
  return h(
    "dl",
    { class: "props", id: "object-props" },
    rows.map(([k, v]) => [h("dt", { text: k }), h("dd", { class: k === "Size" || k === "Last modified" ? "" : "mono", dataset: { prop: k }, text: v || "—" })]),
  );
}

function metadataList(metadata) {
  if (!metadata.length) return h("p", { class: "muted", text: "No user metadata (x-amz-meta-*)." });
  return h("dl", { class: "props" }, metadata.map(([k, v]) => [h("dt", { class: "mono", text: k }), h("dd", { class: "mono", text: v })]));
}

/** The tag editor: rows of key/value inputs, saved together. */
function tagEditor(bucket, key, initial) {
  const rows = h("div", { class: "tag-rows", id: "tag-rows" });
  const error = h("p", { class: "form-error", role: "alert" });
  const addRow = (k = "", v = "") => {
    const row = h(
      "div",
      { class: "tag-row" },
      h("input", { class: "tag-key", "aria-label": "Tag key", placeholder: "key", maxlength: TAG_KEY_MAX_CHARS, value: k }),
      h("input", { class: "tag-value", "aria-label": "Tag value", placeholder: "value", maxlength: TAG_VALUE_MAX_CHARS, value: v }),
      h("button", { type: "button", class: "ghost small", "aria-label": "Remove tag", onclick: () => { row.remove(); sync(); } }, icon("close")),
    );
    rows.append(row);
    sync();
  };
  const add = h("button", { type: "button", class: "secondary small", onclick: () => addRow() }, icon("plus"), "Add tag");
  function sync() {
    add.disabled = rows.children.length >= TAGS_MAX;
  }
  for (const [k, v] of Object.entries(initial)) addRow(k, v);
  const save = actionButton("Save tags", { class: "primary small", id: "save-tags" }, async () => {
    error.textContent = "";
    const tags = {};
    for (const row of rows.children) {
      const k = row.querySelector(".tag-key").value.trim();
      const v = row.querySelector(".tag-value").value;
      if (!k && !v) continue;
      if (!k) {
        error.textContent = "Every tag needs a key.";
        return;
      }
      if (k in tags) {
        error.textContent = `The key "${k}" is used twice.`;
        return;
      }
      tags[k] = v;
    }
    try {
      await api.setTags(bucket, key, tags);
      notify(`Tags of ${baseName(key)} saved.`, "success");
    } catch (err) {
      error.textContent = `Cannot save the tags: ${errorText(err)}`;
    }
  }, "Saving tags");
  return h(
    "div",
    { class: "tags" },
    rows,
    error,
    h("div", { class: "row-actions" }, add, save),
    h("p", { class: "hint", text: `At most ${TAGS_MAX} tags; keys up to ${TAG_KEY_MAX_CHARS} characters, values up to ${TAG_VALUE_MAX_CHARS}.` }),
  );
}

function versionRow(bucket, key, v, refresh) {
  const state = v.deleteMarker ? "delete marker" : v.isLatest ? "current" : "";
  const actions = [];
  if (!v.deleteMarker) {
    actions.push(h("a", { class: "button ghost small", href: objectUrl(bucket, key, v.versionId), download: baseName(key), title: "Download this version", "aria-label": `Download version ${v.versionId}` }, icon("download")));
  }
  if (!v.deleteMarker && !v.isLatest) {
    actions.push(actionButton([icon("restore"), "Restore"], { class: "ghost small", title: "Copy this version to be the current one", dataset: { action: "restore" } }, async () => {
      await api.restoreVersion(bucket, key, v.versionId);
      notify(`Version ${shortId(v.versionId)} of ${baseName(key)} restored.`, "success");
      await refresh();
    }, "Restoring the version"));
  }
  actions.push(actionButton(icon("trash", "Delete version"), { class: "ghost small danger-text", title: "Delete this version permanently", dataset: { action: "delete-version" } }, async () => {
    const ok = await confirmDialog({
      title: "Delete this version?",
      message: `Version ${v.versionId} of ${key} will be deleted permanently.`,
      confirmLabel: "Delete version",
      danger: true,
    });
    if (!ok) return;
    await api.deleteObject(bucket, key, v.versionId);
    notify(`Version ${shortId(v.versionId)} deleted.`, "success");
    await refresh();
  }, "Deleting the version"));
  return h(
    "tr",
    { dataset: { version: v.versionId } },
    h("td", { "data-label": "Version", class: "mono", title: v.versionId, text: shortId(v.versionId) }),
    h("td", { "data-label": "Modified", class: "nowrap", title: formatDate(v.lastModified), text: formatShortDate(v.lastModified) }),
    h("td", { "data-label": "Size", class: "num", text: v.deleteMarker ? "—" : formatBytes(v.size) }),
    h("td", { "data-label": "State" }, state ? h("span", { class: `badge ${v.deleteMarker ? "badge-warn" : "badge-ok"}`, text: state }) : ""),
    h("td", { class: "actions" }, actions),
  );
}

/**
 * Open the details of `key`; `onChanged` runs when something the listing shows changed
 * (a restore, a delete).
 */
export function openDetails({ bucket, key, onChanged }) {
  const panel = drawer(baseName(key));
  const header = h("p", { class: "mono muted break", text: `${bucket}/${key}` });
  const content = h("div", {}, h("p", { class: "muted", text: "Loading…" }));
  replace(panel.body, header, content);

  const load = async () => {
    let info;
    let tags;
    let versions;
    try {
      [info, tags, versions] = await Promise.all([
        api.head(bucket, key),
        api.tags(bucket, key),
        api.versions(bucket, key),
      ]);
    } catch (err) {
      if (err.status === 404) {
        replace(content, h("p", { class: "muted", text: "This object has no current version any more (deleted)." }));
        return;
      }
      replace(content, h("p", { class: "form-error", role: "alert", text: `Cannot load the object: ${errorText(err)}` }));
      return;
    }
    const refresh = async () => {
      await load();
      if (onChanged) onChanged();
    };
    const remove = actionButton([icon("trash"), "Delete"], { class: "danger small" }, async () => {
      const ok = await confirmDialog({
        title: `Delete ${baseName(key)}?`,
        message: "In a versioned bucket this adds a delete marker and older versions stay; otherwise the object is gone.",
        confirmLabel: "Delete",
        danger: true,
      });
      if (!ok) return;
      await api.deleteObject(bucket, key);
      notify(`${baseName(key)} deleted.`, "success");
      panel.close();
      if (onChanged) onChanged();
    }, "Deleting the object");
    replace(
      content,
      h(
        "div",
        { class: "row-actions" },
        h("a", { class: "button primary small", href: objectUrl(bucket, key), download: baseName(key), id: "details-download" }, icon("download"), "Download"),
        remove,
      ),
      h("h3", { text: "Properties" }),
      properties(info),
      h("h3", { text: "Metadata" }),
      metadataList(info.metadata),
      h("h3", { text: "Tags" }),
      tagEditor(bucket, key, tags),
      h("h3", { text: `Versions (${versions.versions.length}${versions.truncated ? "+" : ""})` }),
      h(
        "table",
        { class: "table responsive compact", id: "versions" },
        h("thead", {}, h("tr", {}, ["Version", "Modified", "Size", "State", ""].map((c) => h("th", { text: c })))),
        h("tbody", {}, versions.versions.map((v) => versionRow(bucket, key, v, refresh))),
      ),
    );
  };
  load();
  return panel;
}
