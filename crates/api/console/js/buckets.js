// The bucket list beside the file browser, with the form that creates buckets.

import { api } from "./api.js";
import { errorText, h, icon, replace } from "./dom.js";
import { browseHash } from "./routes.js";

/** S3 bucket names: 3-63 lower-case letters, digits, dots and hyphens. */
const BUCKET_NAME_PATTERN = "[a-z0-9][a-z0-9.\\-]{1,61}[a-z0-9]";

function createForm() {
  const input = h("input", {
    id: "new-bucket",
    name: "bucket",
    placeholder: "new-bucket-name",
    pattern: BUCKET_NAME_PATTERN,
    required: true,
    autocomplete: "off",
    autocapitalize: "off",
    spellcheck: "false",
    title: "3-63 characters: lower-case letters, digits, dots and hyphens",
  });
  const error = h("p", { class: "form-error", role: "alert" });
  const submit = h("button", { class: "primary", type: "submit" }, icon("plus"), "Create");
  const form = h(
    "form",
    { class: "create-bucket" },
    h("label", { for: "new-bucket", text: "New bucket" }),
    h("div", { class: "inline-field" }, input, submit),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    const name = input.value.trim();
    try {
      await api.createBucket(name);
      input.value = "";
      window.location.hash = browseHash(name);
    } catch (err) {
      error.textContent = `Cannot create ${name}: ${errorText(err)}`;
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** Fill `aside` with the buckets (marking `current`); resolves to the bucket list. */
export async function renderBuckets(aside, current) {
  const list = h("ul", { class: "bucket-list", id: "bucket-list" }, h("li", { class: "muted", text: "Loading…" }));
  replace(aside, h("h2", { text: "Buckets" }), list, createForm());
  let buckets;
  try {
    buckets = await api.buckets();
  } catch (err) {
    replace(list, h("li", { class: "form-error", role: "alert", text: `Cannot list buckets: ${errorText(err)}` }));
    return [];
  }
  replace(
    list,
    buckets.length
      ? buckets.map((b) =>
          h(
            "li",
            {},
            h(
              "a",
              {
                href: browseHash(b.name),
                dataset: { bucket: b.name },
                "aria-current": b.name === current ? "page" : null,
              },
              icon("bucket"),
              h("span", { text: b.name }),
            ),
          ))
      : h("li", { class: "muted", text: "No buckets yet." }),
  );
  return buckets;
}
