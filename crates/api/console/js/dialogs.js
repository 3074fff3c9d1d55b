// Modal dialogs (<dialog>): confirmations, a one-field prompt and side drawers.

import { h, icon } from "./dom.js";

function modal(className, labelledBy) {
  const dialog = h("dialog", { class: className, "aria-labelledby": labelledBy });
  document.body.append(dialog);
  dialog.addEventListener("close", () => dialog.remove());
  // A click on the backdrop (the dialog element itself, outside its content) closes it.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close("cancel");
  });
  return dialog;
}

let nextId = 0;
function uniqueId(prefix) {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/** Ask before doing something; resolves to true when confirmed. */
export function confirmDialog({ title, message, confirmLabel = "OK", danger = false }) {
  const titleId = uniqueId("confirm-title");
  const dialog = modal("dialog-small", titleId);
  return new Promise((resolve) => {
    const form = h(
      "form",
      { method: "dialog", class: "dialog-body" },
      h("h2", { id: titleId, text: title }),
      message ? h("p", { text: message }) : null,
      h(
        "div",
        { class: "dialog-actions" },
        h("button", { value: "cancel", class: "secondary", type: "submit", formnovalidate: true }, "Cancel"),
        h("button", { value: "ok", class: danger ? "danger" : "primary", type: "submit" }, confirmLabel),
      ),
    );
    dialog.append(form);
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"));
    dialog.showModal();
  });
}

/** Ask for one line of text; resolves to the text, or null when cancelled. */
export function promptDialog({ title, label, placeholder = "", confirmLabel = "OK", pattern, hint }) {
  const titleId = uniqueId("prompt-title");
  const inputId = uniqueId("prompt-input");
  const dialog = modal("dialog-small", titleId);
  return new Promise((resolve) => {
    const input = h("input", { id: inputId, required: true, placeholder, pattern, autocomplete: "off" });
    const form = h(
      "form",
      { method: "dialog", class: "dialog-body" },
      h("h2", { id: titleId, text: title }),
      h("label", { for: inputId, text: label }),
      input,
      hint ? h("p", { class: "hint", text: hint }) : null,
      h(
        "div",
        { class: "dialog-actions" },
        h("button", { value: "cancel", class: "secondary", type: "submit", formnovalidate: true }, "Cancel"),
        h("button", { value: "ok", class: "primary", type: "submit" }, confirmLabel),
      ),
    );
    dialog.append(form);
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok" ? input.value.trim() : null));
    dialog.showModal();
  });
}

/**
 * A panel sliding in from the right (full screen on phones). Returns {dialog, body,
 * close}; `onClose` runs once it is closed.
 */
export function drawer(title, { onClose } = {}) {
  const titleId = uniqueId("drawer-title");
  const dialog = modal("drawer", titleId);
  const body = h("div", { class: "drawer-body" });
  const close = () => dialog.close();
  dialog.append(
    h(
      "div",
      { class: "drawer-head" },
      h("h2", { id: titleId, text: title }),
      h("button", { class: "ghost", "aria-label": "Close", onclick: close }, icon("close")),
    ),
    body,
  );
  if (onClose) dialog.addEventListener("close", onClose);
  dialog.showModal();
  return { dialog, body, close };
}
