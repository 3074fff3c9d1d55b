// Bucket settings: versioning, public read, lifecycle rules, and deleting the bucket.

import { api } from "./api.js";
import { confirmDialog, drawer } from "./dialogs.js";
import { actionButton, errorText, h, icon, notify, replace } from "./dom.js";

/** Largest number of days a rule field accepts (the server's u32). */
const MAX_DAYS = 4294967295;
/** The fields of a lifecycle rule that count days. */
const DAY_FIELDS = [
  ["expirationDays", "Expire current after (days)"],
  ["noncurrentDays", "Delete noncurrent after (days)"],
  ["abortIncompleteMultipartDays", "Abort uploads after (days)"],
];

function versioningSection(bucket, status, reload) {
  const set = (next) => actionButton(next === "Enabled" ? "Enable versioning" : "Suspend versioning",
    { class: next === "Enabled" ? "primary small" : "secondary small", id: next === "Enabled" ? "enable-versioning" : "suspend-versioning" },
    async () => {
      await api.setVersioning(bucket, next);
      notify(`Versioning of ${bucket}: ${next}.`, "success");
      await reload();
    }, "Changing versioning");
  return h(
    "section",
    { class: "settings-section" },
    h("h3", { text: "Versioning" }),
    h("p", {}, "Status: ", h("strong", { id: "versioning-status", text: status })),
    h("p", { class: "hint", text: "Enabled keeps every version of every object. Once enabled it can be suspended (new writes replace the null version) but not switched off." }),
    h("div", { class: "row-actions" }, status === "Enabled" ? set("Suspended") : set("Enabled")),
  );
}

function publicReadSection(bucket, publicRead) {
  const box = h("input", { type: "checkbox", id: "public-read", checked: publicRead });
  box.addEventListener("change", async () => {
    box.disabled = true;
    try {
      await api.setPublicRead(bucket, box.checked);
      notify(`${bucket} is now ${box.checked ? "public-read" : "private"}.`, "success");
    } catch (err) {
      box.checked = !box.checked;
      notify(`Cannot change public read: ${errorText(err)}`, "error");
    } finally {
      box.disabled = false;
    }
  });
  return h(
    "section",
    { class: "settings-section" },
    h("h3", { text: "Access" }),
    h("label", { class: "check" }, box, "Public read: anyone may download objects without credentials"),
  );
}

function ruleRow(rule, onRemove) {
  const field = (name, label, attrs) =>
    h("label", { class: "field" }, h("span", { text: label }), h("input", { name, ...attrs }));
  const row = h(
    "fieldset",
    { class: "rule" },
    h("legend", { class: "sr-only", text: "Lifecycle rule" }),
    field("id", "Rule ID", { value: rule.id || "", required: true, maxlength: 255 }),
    field("prefix", "Key prefix", { value: rule.prefix || "", placeholder: "(all keys)" }),
    DAY_FIELDS.map(([name, label]) =>
      field(name, label, { type: "number", min: 1, max: MAX_DAYS, step: 1, value: rule[name] ?? "" })),
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "enabled", checked: rule.status !== "Disabled" }), "Enabled"),
    h("button", { type: "button", class: "ghost small danger-text", onclick: () => onRemove(row) }, icon("trash"), "Remove rule"),
  );
  return row;
}

/** The rule JSON of an editor row, or an error message. */
function readRule(row) {
  const value = (name) => row.querySelector(`[name="${name}"]`).value.trim();
  const rule = {
    id: value("id"),
    status: row.querySelector('[name="enabled"]').checked ? "Enabled" : "Disabled",
    prefix: value("prefix"),
  };
  if (!rule.id) return "Every rule needs an ID.";
  let actions = 0;
  for (const [name, label] of DAY_FIELDS) {
    const text = value(name);
    if (!text) continue;
    const days = Number(text);
    if (!Number.isInteger(days) || days < 1 || days > MAX_DAYS) return `${label} of rule ${rule.id} must be a whole number of days (at least 1).`;
    rule[name] = days;
    actions += 1;
  }
  if (!actions) return `Rule ${rule.id} does nothing: give it at least one number of days.`;
  return rule;
}

function lifecycleSection(bucket, rules) {
  const list = h("div", { class: "rules", id: "lifecycle-rules" });
  const error = h("p", { class: "form-error", role: "alert" });
  const empty = h("p", { class: "muted", text: "No lifecycle rules: objects are kept until deleted." });
  const sync = () => {
    empty.hidden = list.children.length > 0;
  };
  const remove = (row) => {
    row.remove();
    sync();
  };
  for (const r of rules) list.append(ruleRow(r, remove));
  sync();
  const add = h("button", { type: "button", class: "secondary small", onclick: () => {
    list.append(ruleRow({ id: `rule-${list.children.length + 1}`, status: "Enabled" }, remove));
    sync();
  } }, icon("plus"), "Add rule");
  const save = actionButton("Save rules", { class: "primary small", id: "save-lifecycle" }, async () => {
    error.textContent = "";
    const parsed = [...list.children].map(readRule);
    const bad = parsed.find((r) => typeof r === "string");
    if (bad) {
      error.textContent = bad;
      return;
    }
    try {
      await api.setLifecycle(bucket, parsed);
      notify(parsed.length ? `Lifecycle rules of ${bucket} saved.` : `Lifecycle rules of ${bucket} removed.`, "success");
    } catch (err) {
      error.textContent = `Cannot save the rules: ${errorText(err)}`;
    }
  }, "Saving lifecycle rules");
  return h(
    "section",
    { class: "settings-section" },
    h("h3", { text: "Lifecycle rules" }),
    h("p", { class: "hint", text: "Applied by the node's lifecycle pass (hourly by default)." }),
    empty,
    list,
    error,
    h("div", { class: "row-actions" }, add, save),
  );
}

function dangerSection(bucket, panel, onDeleted) {
  const remove = actionButton([icon("trash"), "Delete bucket"], { class: "danger small", id: "delete-bucket" }, async () => {
    const ok = await confirmDialog({
      title: `Delete bucket ${bucket}?`,
      message: "Only an empty bucket (no objects, versions or uploads) can be deleted.",
      confirmLabel: "Delete bucket",
      danger: true,
    });
    if (!ok) return;
    try {
      await api.deleteBucket(bucket);
    } catch (err) {
      if (err.code === "BucketNotEmpty") {
        notify(`${bucket} is not empty: delete its objects (and their versions) first.`, "error");
        return;
      }
      throw err;
    }
    notify(`Bucket ${bucket} deleted.`, "success");
    panel.close();
    onDeleted();
  }, "Deleting the bucket");
  return h("section", { class: "settings-section danger-zone" }, h("h3", { text: "Delete" }), remove);
}

/** Open the settings of `bucket`; `onChanged` runs when the drawer closes. */
export function openBucketSettings({ bucket, onChanged, onDeleted }) {
  const panel = drawer(`Settings of ${bucket}`, { onClose: onChanged });
  const load = async () => {
    try {
      const info = await api.bucket(bucket);
      const rules = info.lifecycleRules ? await api.lifecycle(bucket) : [];
      replace(
        panel.body,
        versioningSection(bucket, info.versioning, load),
        publicReadSection(bucket, info.publicRead),
        lifecycleSection(bucket, rules),
        dangerSection(bucket, panel, onDeleted),
      );
    } catch (err) {
      replace(panel.body, h("p", { class: "form-error", role: "alert", text: `Cannot load the settings: ${errorText(err)}` }));
    }
  };
  replace(panel.body, h("p", { class: "muted", text: "Loading…" }));
  load();
  return panel;
}
