// The login form: access key and secret key, exchanged for an HttpOnly session cookie.

import { api } from "./api.js";
import { errorText, h, icon } from "./dom.js";

function loginError(err) {
  if (err.code === "InvalidAccessKeyId" || err.code === "SignatureDoesNotMatch") {
    return "Wrong access key or secret key.";
  }
  return `Login failed: ${errorText(err)}`;
}

/** Show the login form in `root`; `onLoggedIn(session)` runs after a successful login. */
export function renderLogin(root, { onLoggedIn, notice = "" }) {
  const error = h("p", { class: "form-error", role: "alert", id: "login-error" });
  if (notice) error.textContent = notice;
  const access = h("input", {
    id: "access-key",
    name: "accessKey",
    autocomplete: "username",
    required: true,
    autocapitalize: "off",
    spellcheck: "false",
  });
  const secret = h("input", {
    id: "secret-key",
    name: "secretKey",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = h("button", { class: "primary wide", type: "submit" }, "Log in");
  const form = h(
    "form",
    { class: "login-card", "aria-labelledby": "login-title" },
    h("div", { class: "login-brand" }, icon("logo"), h("span", { text: "BucketDB" })),
    h("h1", { id: "login-title", text: "Log in to the console" }),
    h("label", { for: "access-key", text: "Access key" }),
    access,
    h("label", { for: "secret-key", text: "Secret key" }),
    secret,
    error,
    submit,
    h("p", {
      class: "hint",
      text: "Use the root keys printed at the node's first start (also in meta/credentials.toml) or set with BUCKETDB_ACCESS_KEY / BUCKETDB_SECRET_KEY.",
    }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    try {
      const session = await api.login(access.value.trim(), secret.value);
      secret.value = "";
      onLoggedIn(session);
    } catch (err) {
      error.textContent = loginError(err);
      secret.select();
    } finally {
      submit.disabled = false;
    }
  });
  root.replaceChildren(h("div", { class: "login-page" }, form));
  access.focus();
}
