// DOM helpers: an element builder, icons and the notice area.

const SVG_NS = "http://www.w3.org/2000/svg";
/** How long an informational notice stays up. */
const NOTICE_MS = 5000;
/** Errors stay longer, but not forever. */
const ERROR_NOTICE_MS = 15000;
/** Most notices shown at once; older ones make room. */
const MAX_NOTICES = 4;

/**
 * h("button", {class: "primary", onclick: f, disabled: true}, "Save") builds an element.
 * Attributes: `class`, `text`, `dataset` (object), `on<event>` (listeners), booleans
 * (set when true), everything else with setAttribute. Children: nodes or strings;
 * null/undefined/false are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(name, String(value));
  }
  for (const child of children) if (child) el.append(child);
  return el;
}

// 24×24 outline icons (paths drawn for this console).
const ICONS = {
  folder: "M3 6.5A1.5 1.5 0 0 1 4.5 5H9l2 2h8.5A1.5 1.5 0 0 1 21 8.5v9a1.5 1.5 0 0 1-1.5 1.5h-15A1.5 1.5 0 0 1 3 17.5z",
  file: "M6 3h8l4 4v13a1 1 0 0 1-1 1H6a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1zM14 3v4h4",
  bucket: "M4 6c0-1.7 3.6-3 8-3s8 1.3 8 3-3.6 3-8 3-8-1.3-8-3zm0 0 2 13c.2 1.2 2.8 2 6 2s5.8-.8 6-2l2-13",
  upload: "M12 16V4m0 0-5 5m5-5 5 5M4 17v2a1 1 0 0 0 1 1h14a1 1 0 0 0 1-1v-2",
  download: "M12 4v12m0 0-5-5m5 5 5-5M4 17v2a1 1 0 0 0 1 1h14a1 1 0 0 0 1-1v-2",
  trash: "M4 7h16M9 7V4h6v3m-8 0 1 13h8l1-13",
  refresh: "M20 12a8 8 0 1 1-2.3-5.7M20 4v5h-5",
  settings: "M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6zm7.4-3a7.4 7.4 0 0 0-.1-1.3l2-1.6-2-3.4-2.4 1a7.5 7.5 0 0 0-2.2-1.3L14.3 3h-4l-.4 2.5a7.5 7.5 0 0 0-2.2 1.3l-2.4-1-2 3.4 2 1.6a7.4 7.4 0 0 0 0 2.6l-2 1.6 2 3.4 2.4-1a7.5 7.5 0 0 0 2.2 1.3l.4 2.5h4l.4-2.5a7.5 7.5 0 0 0 2.2-1.3l2.4 1 2-3.4-2-1.6c.1-.4.1-.9.1-1.3z",
  plus: "M12 5v14M5 12h14",
  close: "M6 6l12 12M18 6 6 18",
  restore: "M4 12a8 8 0 1 0 2.3-5.7M4 4v5h5",
  logo: "M4 7c0-1.7 3.6-3 8-3s8 1.3 8 3v10c0 1.7-3.6 3-8 3s-8-1.3-8-3zm0 0c0 1.7 3.6 3 8 3s8-1.3 8-3M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3",
};

export function icon(name, label) {
  const el = svg(
    "svg",
    {
      class: "icon",
      viewBox: "0 0 24 24",
      width: 18,
      height: 18,
      "aria-hidden": label ? null : "true",
      role: label ? "img" : null,
      "aria-label": label || null,
    },
    svg("path", { d: ICONS[name] || ICONS.file }),
  );
  return el;
}

/** A human sentence for any error thrown by the API layer. */
export function errorText(err) {
  if (err && err.name === "ApiError") {
    const ref = err.requestId ? ` (request ${err.requestId})` : "";
    return `${err.message}${ref}`;
  }
  return err && err.message ? err.message : String(err);
}

/** Show a notice at the bottom of the page; `kind` is "info", "success" or "error". */
export function notify(message, kind = "info") {
  const area = document.getElementById("notices");
  if (!area) return;
  while (area.children.length >= MAX_NOTICES) area.firstElementChild.remove();
  const note = h(
    "div",
    { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", { text: message }),
    h("button", { class: "ghost small", "aria-label": "Dismiss", onclick: () => note.remove() }, icon("close")),
  );
  area.append(note);
  setTimeout(() => note.remove(), kind === "error" ? ERROR_NOTICE_MS : NOTICE_MS);
}

export function notifyError(context, err) {
  notify(`${context}: ${errorText(err)}`, "error");
}

/** A button that shows it is busy while `action` runs, and reports its failure. */
export function actionButton(label, attrs, action, failureContext) {
  const button = h("button", attrs, label);
  button.addEventListener("click", async (event) => {
    event.preventDefault();
    if (button.disabled) return;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      await action(event);
    } catch (err) {
      notifyError(failureContext, err);
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  });
  return button;
}
