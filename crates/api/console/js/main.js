// The console's entry point: checks the session, shows the login form or the app, and
// switches views as the location hash changes.

import { UNAUTHENTICATED_EVENT, api } from "./api.js";
import { mountCluster } from "./cluster.js";
import { errorText, h, icon, notify } from "./dom.js";
import { renderLogin } from "./login.js";
import { mountMetrics } from "./metrics.js";
import { mountBrowser } from "./objects.js";
import { parseRoute } from "./routes.js";

const VIEW_TITLES = { browse: "Files", cluster: "Cluster", metrics: "Metrics" };

const app = document.getElementById("app");
const topbar = document.getElementById("topbar");
let stopView = null;
let session = null;

function stopCurrentView() {
  if (stopView) stopView();
  stopView = null;
}

function closeDialogs() {
  for (const dialog of document.querySelectorAll("dialog")) dialog.close();
}

function showLogin(notice = "") {
  stopCurrentView();
  closeDialogs();
  session = null;
  topbar.hidden = true;
  document.title = "Log in · BucketDB";
  renderLogin(app, {
    notice,
    onLoggedIn: (s) => {
      session = s;
      showApp();
    },
  });
}

function renderTopbar(view) {
  const nav = Object.entries(VIEW_TITLES).map(([name, title]) =>
    h("a", { href: `#/${name}`, dataset: { view: name }, "aria-current": name === view ? "page" : null, text: title }));
  const logout = h("button", { class: "secondary small", id: "logout" }, "Log out");
  logout.addEventListener("click", async () => {
    try {
      await api.logout();
    } catch (err) {
      notify(`Logging out failed: ${errorText(err)}`, "error");
      return;
    }
    showLogin("You are logged out.");
  });
  topbar.replaceChildren(
    h("a", { class: "brand", href: "#/browse" }, icon("logo"), h("span", { text: "BucketDB" })),
    h("nav", { class: "views", "aria-label": "Views" }, nav),
    h("div", { class: "who" }, h("span", { class: "mono muted", id: "who", title: "Access key", text: session.accessKey }), logout),
  );
}

function route() {
  if (!session) return;
  closeDialogs();
  stopCurrentView();
  const r = parseRoute(window.location.hash);
  renderTopbar(r.view);
  document.title = `${VIEW_TITLES[r.view]} · BucketDB`;
  if (r.view === "cluster") stopView = mountCluster(app);
  else if (r.view === "metrics") stopView = mountMetrics(app);
  else stopView = mountBrowser(app, r);
}

function showApp() {
  topbar.hidden = false;
  route();
}

window.addEventListener("hashchange", route);
window.addEventListener(UNAUTHENTICATED_EVENT, () => {
  if (session) showLogin("Your session has expired. Please log in again.");
});
// Dropping a file outside the drop zone must not navigate away from the console.
for (const type of ["dragover", "drop"]) {
  window.addEventListener(type, (event) => event.preventDefault());
}

async function boot() {
  try {
    const s = await api.session();
    if (s.authenticated) {
      session = s;
      showApp();
      return;
    }
  } catch (err) {
    showLogin(`The server cannot be reached: ${errorText(err)}`);
    return;
  }
  showLogin();
}

boot();
