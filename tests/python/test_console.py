"""The web console in a real headless Chromium (Debian's `chromium`, driven by Playwright).

Each test starts its own `bucketdb server` (free loopback ports, fresh directories) and
drives the console like a person would: log in, browse, upload, download, edit. The
page must log no errors to the browser console. A screenshot of each page goes to
target/console-screenshots/ (test artifacts).

    cargo build --bin bucketdb
    .venv/bin/pip install -r tests/python/requirements.txt
    .venv/bin/pytest tests/python/test_console.py
"""

import hashlib
import os
import pathlib
import random
import re
import time

import pytest
import requests
from conftest import REPO_ROOT, Node, poll, running_cluster, running_node

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - reported by the fixture below
    sync_playwright = None

CHROMIUM = os.environ.get("BUCKETDB_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "target" / "console-screenshots"
ACCESS_KEY = "CONSOLETESTKEY0001"
SECRET_KEY = "console-test-secret-0123456789abcdef"
REQUEST_TIMEOUT = 60.0
# Longest wait for anything on the page (a debug build on a busy machine is slow).
UI_TIMEOUT_MS = 20_000
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Larger than one progress event, so the bar really moves; still quick on loopback.
UPLOAD_BYTES = 3 * 1024 * 1024
# The console's page size (PAGE_SIZE in objects.js).
PAGE_SIZE = 100
# Cluster nodes: short liveness timings, so a killed node is reported down within seconds
# (the console polls /cluster every 5 s; UI_TIMEOUT_MS covers both).
CLUSTER_ARGS = ["--cluster-secret", "console-test-cluster-secret-0001",
                "--heartbeat-interval", "200ms", "--node-down-timeout", "2s"]
READY_POLL_S = 0.1
# The cluster-wide listing test: 5 nodes at replication factor 3 (the default), so each
# node holds about 3/5 of the keys.
CLUSTER_NODES = 5
CLUSTER_RF = 3
# A bound on the pages of one folder in the browser (a merged page may come back short).
MAX_PAGES = 20


def missing(reason):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (the test script installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None:
        missing("playwright is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        missing(f"chromium not found at {CHROMIUM}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def node(tmp_path, request):
    with running_node(tmp_path, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as n:
        yield n
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(f"server log (tail):\n{n.log_tail()}")


class Console:
    """A browser tab on the node's console that records what the page logs."""

    def __init__(self, browser, node, viewport=LAPTOP):
        self.node = node
        self.context = browser.new_context(viewport=viewport, accept_downloads=True)
        self.page = self.context.new_page()
        self.page.set_default_timeout(UI_TIMEOUT_MS)
        expect.set_options(timeout=UI_TIMEOUT_MS)
        self.errors = []
        # Responses the test provokes on purpose: (status, URL path).
        self.expected = set()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def _console(self, message):
        if message.type != "error":
            return
        url = (message.location or {}).get("url", "")
        status = re.search(r"status of (\d+)", message.text)
        path = re.sub(r"^https?://[^/]+", "", url)
        if status and (int(status.group(1)), path) in self.expected:
            return
        self.errors.append(f"{message.text} ({url})")

    def close(self):
        self.context.close()
        assert not self.errors, f"the page logged errors: {self.errors}"

    def shot(self, name, full_page=False):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)

    def open(self):
        self.page.goto(self.node.base_url + "/")
        expect(self.page.locator("#access-key")).to_be_visible()

    def login(self):
        self.open()
        self.page.fill("#access-key", ACCESS_KEY)
        self.page.fill("#secret-key", SECRET_KEY)
        self.page.click("form.login-card button[type=submit]")
        expect(self.page.locator("#who")).to_have_text(ACCESS_KEY)

    def create_bucket(self, name):
        self.page.fill("#new-bucket", name)
        self.page.click(".create-bucket button[type=submit]")
        expect(self.page.locator("#breadcrumbs")).to_have_text(name)
        expect(self.page.locator(f'#bucket-list a[data-bucket="{name}"]')).to_have_attribute("aria-current", "page")

    def upload(self, path, key):
        """Upload `path` in the current folder through the file picker; waits for 100%."""
        self.page.set_input_files("#file-input", str(path))
        row = self.page.locator(f'#uploads li[data-key="{key}"]').last
        expect(row.locator("progress")).to_have_attribute("value", "100")
        expect(row).to_have_attribute("data-state", "done")
        expect(row.locator(".upload-percent")).to_have_text("100%")

    def open_details(self, key):
        self.page.click(f'tr[data-key="{key}"] button.link')
        expect(self.page.locator('#object-props [data-prop="SHA-256"]')).not_to_have_text("—")

    def close_dialog(self):
        self.page.keyboard.press("Escape")
        expect(self.page.locator("dialog[open]")).to_have_count(0)

    def confirm(self):
        self.page.locator("dialog[open] button[value=ok]").click()


@pytest.fixture
def console(browser, node):
    c = Console(browser, node)
    try:
        yield c
    finally:
        c.close()


def rest(node, method, path, **kwargs):
    r = requests.request(method, node.base_url + path, auth=(ACCESS_KEY, SECRET_KEY), timeout=REQUEST_TIMEOUT, **kwargs)
    r.raise_for_status()
    return r


def write_random(path, size, seed):
    data = hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1)
    data = bytes(b ^ (i & 0xFF) for i, b in enumerate(data[:size]))
    path.write_bytes(data)
    return data


def test_wrong_password_shows_an_error_and_logs_nobody_in(console):
    console.expected.add((403, "/console/session"))
    console.open()
    console.page.fill("#access-key", ACCESS_KEY)
    console.page.fill("#secret-key", "not-the-secret")
    console.page.click("form.login-card button[type=submit]")
    expect(console.page.locator("#login-error")).to_have_text("Wrong access key or secret key.")
    expect(console.page.locator("#topbar")).to_be_hidden()
    assert not console.context.cookies(), "a failed login sets no cookie"
    console.shot("login-wrong-password")


def test_login_sets_an_http_only_cookie_and_the_cluster_view_shows_the_node(console):
    console.login()
    [cookie] = console.context.cookies()
    assert cookie["name"] == "bucketdb_session"
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert console.page.evaluate("document.cookie") == "", "scripts cannot read the session"
    assert console.page.evaluate("Object.keys(localStorage).length") == 0
    assert SECRET_KEY not in console.page.url
    console.page.click('.views a[data-view="cluster"]')
    row = console.page.locator(f'#nodes tr[data-node="{console.node.node_id}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("active")
    expect(row).to_contain_text("alive")
    expect(row).to_contain_text("100%")
    expect(console.page.locator(".cards")).to_contain_text("Ring version")
    expect(console.page.locator(".cards")).to_contain_text("Async")
    console.shot("cluster")


def test_upload_folders_download_and_tags(console, tmp_path):
    page = console.page
    console.login()
    console.create_bucket("photos")
    console.shot("bucket-empty")

    # A folder: "New folder" opens the (empty) prefix; an upload there creates it.
    page.click("text=New folder")
    page.fill("dialog[open] input", "2024")
    console.confirm()
    expect(page.locator("#breadcrumbs")).to_have_text(re.compile(r"photos\s*/\s*2024"))
    source = tmp_path / "holiday.bin"
    data = write_random(source, UPLOAD_BYTES, seed=1)
    console.upload(source, "2024/holiday.bin")
    expect(page.locator('tr[data-key="2024/holiday.bin"]')).to_be_visible()
    console.shot("upload")

    # Several files at once, then drag and drop.
    many = [tmp_path / f"note-{i}.txt" for i in range(3)]
    for i, f in enumerate(many):
        f.write_text(f"note {i}\n")
    page.set_input_files("#file-input", [str(f) for f in many])
    for f in many:
        expect(page.locator(f'#uploads li[data-key="2024/{f.name}"]')).to_have_attribute("data-state", "done")
    drop = page.evaluate_handle(
        "() => { const dt = new DataTransfer();"
        " dt.items.add(new File(['dropped bytes'], 'dropped.txt', {type: 'text/plain'})); return dt; }"
    )
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": drop})
    expect(page.locator('#uploads li[data-key="2024/dropped.txt"]')).to_have_attribute("data-state", "done")
    expect(page.locator('tr[data-key="2024/dropped.txt"]')).to_be_visible()
    assert rest(console.node, "GET", "/objects/photos/2024/dropped.txt").text == "dropped bytes"
    assert rest(console.node, "HEAD", "/objects/photos/2024/dropped.txt").headers["content-type"] == "text/plain"

    # Back to the bucket root: the folder is listed; into it again.
    page.click('#breadcrumbs a:has-text("photos")')
    folder = page.locator('tr.folder[data-prefix="2024/"]')
    expect(folder).to_be_visible()
    expect(page.locator("tr.object")).to_have_count(0)
    console.shot("browser")
    folder.locator("a").click()
    expect(page.locator('tr[data-key="2024/holiday.bin"]')).to_be_visible()

    # Download: the same bytes.
    with page.expect_download() as download:
        page.click('tr[data-key="2024/holiday.bin"] a[data-action="download"]')
    assert download.value.suggested_filename == "holiday.bin"
    got = pathlib.Path(download.value.path()).read_bytes()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()

    # Details: size, SHA-256, ETag; tags edited and saved.
    console.open_details("2024/holiday.bin")
    props = page.locator("#object-props")
    expect(props.locator('[data-prop="SHA-256"]')).to_have_text(hashlib.sha256(data).hexdigest())
    expect(props.locator('[data-prop="ETag"]')).to_have_text(hashlib.md5(data).hexdigest())
    expect(props).to_contain_text(f"{UPLOAD_BYTES:,} bytes")
    page.click("text=Add tag")
    page.locator("#tag-rows .tag-key").last.fill("env")
    page.locator("#tag-rows .tag-value").last.fill("production")
    page.click("text=Add tag")
    page.locator("#tag-rows .tag-key").last.fill("team")
    page.locator("#tag-rows .tag-value").last.fill("media")
    page.click("#save-tags")
    expect(page.locator(".notice-success").last).to_contain_text("Tags of holiday.bin saved")
    assert rest(console.node, "GET", "/objects/photos/2024/holiday.bin?tags").json() == {"env": "production", "team": "media"}
    console.shot("details")
    # Removing one tag and saving leaves the other.
    page.locator("#tag-rows .tag-row").first.locator("button").click()
    page.click("#save-tags")
    expect(page.locator(".notice-success").last).to_contain_text("saved")
    assert rest(console.node, "GET", "/objects/photos/2024/holiday.bin?tags").json() == {"team": "media"}
    console.close_dialog()

    # Delete from the listing.
    page.click('tr[data-key="2024/note-0.txt"] [data-action="delete"]')
    console.confirm()
    expect(page.locator('tr[data-key="2024/note-0.txt"]')).to_have_count(0)
    r = requests.get(console.node.base_url + "/objects/photos/2024/note-0.txt", auth=(ACCESS_KEY, SECRET_KEY), timeout=REQUEST_TIMEOUT)
    assert r.status_code == 404


def test_versions_restore_and_delete(console, tmp_path):
    page = console.page
    console.login()
    console.create_bucket("docs")
    page.click("#bucket-settings")
    expect(page.locator("#versioning-status")).to_have_text("Unversioned")
    page.click("#enable-versioning")
    expect(page.locator("#versioning-status")).to_have_text("Enabled")
    console.shot("bucket-settings")
    console.close_dialog()
    expect(page.locator("#bucket-versioning")).to_have_text("versioning enabled")

    first, second = tmp_path / "v1" / "report.txt", tmp_path / "v2" / "report.txt"
    for f, text in ((first, "first draft\n"), (second, "second draft, longer\n")):
        f.parent.mkdir()
        f.write_text(text)
    console.upload(first, "report.txt")
    page.click("text=Clear finished")
    console.upload(second, "report.txt")

    console.open_details("report.txt")
    versions = page.locator("#versions tbody tr")
    expect(versions).to_have_count(2)
    expect(versions.first).to_contain_text("current")
    console.shot("versions")

    # Restore the older version: it becomes a third, current version with its bytes.
    versions.nth(1).locator('[data-action="restore"]').click()
    expect(versions).to_have_count(3)
    assert rest(console.node, "GET", "/objects/docs/report.txt").text == "first draft\n"
    body = rest(console.node, "GET", "/versions/docs/report.txt").json()
    assert [v["size"] for v in body["versions"]] == [12, 21, 12]

    # Download of an older version.
    with page.expect_download() as download:
        versions.nth(1).locator("a").click()
    assert pathlib.Path(download.value.path()).read_text() == "second draft, longer\n"

    # Delete one version permanently.
    versions.nth(1).locator('[data-action="delete-version"]').click()
    console.confirm()
    expect(versions).to_have_count(2)

    # Deleting the object adds a delete marker; the versions stay.
    page.locator("dialog[open] button:has-text('Delete')").first.click()
    console.confirm()
    expect(page.locator("dialog.drawer")).to_have_count(0)
    expect(page.locator('tr[data-key="report.txt"]')).to_have_count(0)
    body = rest(console.node, "GET", "/versions/docs/report.txt").json()
    assert body["versions"][0]["deleteMarker"] is True
    assert len(body["versions"]) == 3


def test_bucket_settings_lifecycle_and_delete(console):
    page = console.page
    console.login()
    console.create_bucket("logs")
    rest(console.node, "POST", "/objects/logs/a.log", data=b"x")

    page.click("#bucket-settings")
    page.click("text=Add rule")
    rule = page.locator("#lifecycle-rules fieldset").last
    rule.locator('[name="id"]').fill("expire-old")
    rule.locator('[name="prefix"]').fill("tmp/")
    rule.locator('[name="expirationDays"]').fill("7")
    page.click("#save-lifecycle")
    expect(page.locator(".notice-success").last).to_contain_text("Lifecycle rules of logs saved")
    rules = rest(console.node, "GET", "/lifecycle/logs").json()["rules"]
    assert rules == [{"id": "expire-old", "status": "Enabled", "prefix": "tmp/", "expirationDays": 7}]
    page.check("#public-read")
    expect(page.locator(".notice-success").last).to_contain_text("public-read")
    assert rest(console.node, "GET", "/acl/logs").json()["publicRead"] is True
    console.close_dialog()

    # Reopened, the settings show what was saved.
    page.click("#bucket-settings")
    expect(page.locator('#lifecycle-rules [name="id"]')).to_have_value("expire-old")
    expect(page.locator("#public-read")).to_be_checked()

    # A bucket with objects cannot be deleted: a clear message, nothing deleted.
    console.expected.add((409, "/buckets/logs"))
    page.click("#delete-bucket")
    console.confirm()
    expect(page.locator(".notice-error").last).to_contain_text("logs is not empty")
    console.close_dialog()

    rest(console.node, "DELETE", "/objects/logs/a.log")
    page.click("#bucket-settings")
    page.click("#delete-bucket")
    console.confirm()
    expect(page.locator(".notice-success").last).to_contain_text("Bucket logs deleted")
    expect(page.locator('#bucket-list a[data-bucket="logs"]')).to_have_count(0)
    assert rest(console.node, "GET", "/buckets").json()["buckets"] == []


def test_large_bucket_pages_with_a_cursor(console):
    page = console.page
    with requests.Session() as s:
        s.auth = (ACCESS_KEY, SECRET_KEY)
        for i in range(PAGE_SIZE + 5):
            s.post(f"{console.node.base_url}/objects/big/k{i:04d}", data=b"x", timeout=REQUEST_TIMEOUT).raise_for_status()
    console.login()
    page.click('#bucket-list a[data-bucket="big"]')
    rows = page.locator("#listing tr.object")
    expect(rows).to_have_count(PAGE_SIZE)
    expect(page.locator("#page-prev")).to_be_disabled()
    page.click("#page-next")
    expect(rows).to_have_count(5)
    expect(rows.first).to_have_attribute("data-key", f"k{PAGE_SIZE:04d}")
    expect(page.locator("#page-next")).to_be_disabled()
    expect(page.locator("#list-status")).to_contain_text("Page 2")
    page.click("#page-prev")
    expect(rows).to_have_count(PAGE_SIZE)
    expect(rows.first).to_have_attribute("data-key", "k0000")


def test_metrics_refresh_live(console):
    page = console.page
    console.login()
    page.click('.views a[data-view="metrics"]')
    expect(page.locator("#metrics-node")).to_have_text(console.node.node_id)
    expect(page.locator('[data-metric="disk"] .stat-value')).to_contain_text("used")
    # Rates need two samples: the value turns from "…" into a rate by itself.
    expect(page.locator('[data-metric="requests"] .stat-value')).to_contain_text("req/s")
    expect(page.locator('[data-metric="latency"] .stat-value')).to_contain_text("avg")
    # From the third sample on, the request chart draws a line.
    expect(page.locator('[data-metric="requests"] polyline')).to_have_count(1)
    console.shot("metrics")


def test_phone_layout_and_logout(browser, node):
    phone = Console(browser, node, viewport=PHONE)
    try:
        phone.login()
        phone.create_bucket("mobile")
        rest(node, "POST", "/objects/mobile/readme.txt", data=b"hello")
        phone.page.click('[aria-label="Refresh"]')
        expect(phone.page.locator('tr[data-key="readme.txt"]')).to_be_visible()
        overflow = phone.page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
        phone.shot("phone", full_page=True)

        phone.page.click("#logout")
        expect(phone.page.locator("#login-error")).to_have_text("You are logged out.")
        assert not phone.context.cookies(), "logout clears the cookie"
        phone.page.reload()
        expect(phone.page.locator("#access-key")).to_be_visible()
        expect(phone.page.locator("#topbar")).to_be_hidden()
        phone.shot("logged-out")
    finally:
        phone.close()


def test_cluster_view_renders_many_nodes_and_data_movement(console):
    """A cluster's status (as the cluster issue will serve it) renders every node."""
    page = console.page
    nodes = [
        {"id": f"node-{i}", "address": f"10.0.0.{i}:9080", "state": state, "liveness": live,
         "lastHeartbeatMs": 0, "diskTotalBytes": 1 << 40, "diskUsedBytes": i << 38,
         "diskFreeBytes": (1 << 40) - (i << 38), "objectCount": 1000 * i, "ringShare": share}
        for i, (state, live, share) in enumerate(
            [("active", "alive", 0.4), ("joining", "alive", 0.25), ("draining", "suspect", 0.35), ("active", "down", 0.0)],
            start=1,
        )
    ]
    status = {"ringVersion": 7, "replicationFactor": 3, "configuredReplicationFactor": 3,
              "quorumRequired": True, "replicationTimeoutMs": 10000, "nodes": nodes, "rebalancing": 0.42}
    page.route("**/cluster", lambda route: route.fulfill(json=status))
    console.login()
    page.click('.views a[data-view="cluster"]')
    expect(page.locator("#nodes tbody tr")).to_have_count(4)
    cards = page.locator(".cards")
    expect(cards).to_contain_text("2 / 4 alive")
    expect(cards).to_contain_text("Quorum")
    expect(cards).to_contain_text("waits for 2 of 3 copies")
    expect(cards).to_contain_text("Rebalancing 42%")
    expect(page.locator('#nodes tr[data-node="node-3"]')).to_contain_text("suspect")
    expect(page.locator('#nodes tr[data-node="node-4"]')).to_contain_text("down")
    console.shot("cluster-many-nodes")


def wait_ready(node, timeout=REQUEST_TIMEOUT):
    """Polls /health/ready until 200: a joining node is ready once it is a member."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(node.base_url + "/health/ready", timeout=REQUEST_TIMEOUT).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(READY_POLL_S)
    pytest.fail(f"{node.base_url} not ready after {timeout}s; log:\n{node.log_tail()}")


def test_the_cluster_view_shows_a_killed_node_down_while_its_data_stays_readable(browser, tmp_path):
    """The issue's promise: kill a node of a running cluster and watch the console show
    it down, while what was written stays readable through the others."""
    keys = {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY}
    for name in "abc":
        (tmp_path / name).mkdir()
    with running_node(tmp_path / "a", extra_args=CLUSTER_ARGS + ["--bootstrap"], **keys) as a:
        wait_ready(a)
        join = CLUSTER_ARGS + ["--join", a.base_url]
        with running_node(tmp_path / "b", extra_args=join, **keys) as b:
            c = Node(tmp_path / "c", 1, extra_args=join, **keys)
            try:
                wait_ready(b)
                wait_ready(c)
                body = write_random(tmp_path / "kept.bin", 200_000, seed=7)
                rest(a, "POST", "/objects/kept/kept.bin", data=body)

                console = Console(browser, a)
                page = console.page
                console.login()
                page.click('.views a[data-view="cluster"]')
                expect(page.locator("#nodes tbody tr")).to_have_count(3)
                expect(page.locator(".cards")).to_contain_text("3 / 3 alive")
                row_c = page.locator(f'#nodes tr[data-node="{c.node_id}"]')
                expect(row_c).to_contain_text("alive")

                c.kill()  # SIGKILL
                expect(row_c).to_contain_text("down")
                expect(page.locator(".cards")).to_contain_text("2 / 3 alive")
                for n in (a, b):
                    assert rest(n, "GET", "/objects/kept/kept.bin").content == body, n.base_url
                console.shot("cluster-node-down")
                console.close()
            finally:
                c.kill()


def test_an_expired_session_returns_to_the_login_form(console):
    page = console.page
    console.login()
    expect(page.locator("#bucket-list")).to_contain_text("No buckets yet.")
    # The session ends behind the page's back (expiry, logout in another tab).
    console.context.clear_cookies()
    console.expected.add((401, "/cluster"))
    page.click('.views a[data-view="cluster"]')
    expect(page.locator("#login-error")).to_have_text("Your session has expired. Please log in again.")
    expect(page.locator("#topbar")).to_be_hidden()


@pytest.fixture
def cluster(tmp_path, request):
    """A 5-node cluster (asynchronous replication, the default) with the console keys;
    on a failed test the nodes' log tails are printed."""
    with running_cluster(tmp_path / "cluster", ACCESS_KEY, SECRET_KEY, size=CLUSTER_NODES) as c:
        yield c
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(f"cluster logs (tail):\n{c.log_tail(80)}")


def browse_all_pages(page):
    """Every page of the folder the browser shows, clicking Next as a person would, from
    page 1: ([folder prefixes], [object keys], [[keys of each page]]). The folder must
    already be mounted (its breadcrumbs shown)."""
    status = page.locator("#list-status")
    folders, pages = [], []
    for n in range(1, MAX_PAGES + 1):
        # Set with the rows in one go, once the page has loaded ("Loading…" before).
        expect(status).to_have_text(re.compile(rf"^Page {n} · "))
        folders += page.locator("#listing tr.folder").evaluate_all("rows => rows.map(r => r.dataset.prefix)")
        pages.append(page.locator("#listing tr.object").evaluate_all("rows => rows.map(r => r.dataset.key)"))
        if page.locator("#page-next").is_disabled():
            return folders, [k for p in pages for k in p], pages
        page.click("#page-next")
    pytest.fail(f"the browser still offers a next page after {MAX_PAGES} pages")


def test_the_file_browser_lists_the_whole_cluster_through_any_node(browser, cluster):
    """Through one node's console, the file browser shows every key of a bucket whose
    keys are spread over 5 nodes at RF 3 (so that node holds only some of them), page
    after page, and drops a key deleted through another node; the cluster and metrics
    views label their object counts as per node."""
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    nodes = cluster.nodes
    bucket = "gallery"
    photos = [f"photos/img-{i:03d}.jpg" for i in range(PAGE_SIZE + 15)]
    others = ["docs/guide.txt", "docs/notes/todo.txt", "music/song.mp3", "readme.txt", "zeta.txt"]
    keys = photos + others
    rest(nodes[rng.randrange(CLUSTER_NODES)], "PUT", f"/buckets/{bucket}")
    sessions = []
    try:
        for _ in nodes:
            s = requests.Session()
            s.auth = (ACCESS_KEY, SECRET_KEY)
            sessions.append(s)
        for k in keys:
            i = rng.randrange(CLUSTER_NODES)
            r = sessions[i].post(f"{nodes[i].base_url}/objects/{bucket}/{k}", data=k.encode(), timeout=REQUEST_TIMEOUT)
            assert r.status_code in (200, 201), f"POST {k} through n{i + 1}: {r.status_code} {r.text}"
    finally:
        for s in sessions:
            s.close()
    where = f"(seed {seed})"

    # The console of a random node, opened right away (replication may be under way).
    ci = rng.randrange(CLUSTER_NODES)
    node = nodes[ci]
    console = Console(browser, node)
    page = console.page
    crumbs = page.locator("#breadcrumbs")
    console.login()
    page.click(f'#bucket-list a[data-bucket="{bucket}"]')
    expect(crumbs).to_have_text(bucket)
    folders, objects, _ = browse_all_pages(page)
    assert folders == ["docs/", "music/", "photos/"], f"folders at the top of n{ci + 1}'s browser {where}"
    assert objects == ["readme.txt", "zeta.txt"], f"objects at the top of n{ci + 1}'s browser {where}"
    for prefix in folders:
        expect(page.locator(f'tr.folder[data-prefix="{prefix}"]')).to_contain_text("folder")

    page.click('tr.folder[data-prefix="docs/"] a')
    expect(crumbs).to_have_text(re.compile(r"^gallery\s*/\s*docs$"))
    folders, objects, _ = browse_all_pages(page)
    assert (folders, objects) == (["docs/notes/"], ["docs/guide.txt"]), f"docs/ in n{ci + 1}'s browser {where}"

    page.click(f'#breadcrumbs a:has-text("{bucket}")')
    expect(crumbs).to_have_text(bucket)
    page.click('tr.folder[data-prefix="photos/"] a')
    expect(crumbs).to_have_text(re.compile(r"^gallery\s*/\s*photos$"))
    folders, objects, pages = browse_all_pages(page)
    assert folders == [], f"folders in photos/ {where}"
    assert len(pages) >= 2, f"{len(photos)} keys fit on one page of the browser: {[len(p) for p in pages]}"
    assert objects == photos, f"photos/ in n{ci + 1}'s browser, pages of {[len(p) for p in pages]} {where}: " + (
        f"missing {sorted(set(photos) - set(objects))}, unexpected {sorted(set(objects) - set(photos))}, "
        f"repeated {sorted({k for k in objects if objects.count(k) > 1})}"
    )
    console.shot("cluster-browser-last-page")

    # The node whose console listed everything holds only some of the keys itself.
    counts = poll(
        f"{CLUSTER_RF} copies of each of {len(keys)} objects",
        lambda: cluster.held_counts(len(keys), CLUSTER_RF),
        details=lambda: str([cluster.own_status(n) for n in nodes]),
    )
    assert 0 < counts[ci] < len(keys), f"objects held per node: {counts} of {len(keys)} {where}"

    # A key on the page shown, deleted through another node: gone on Refresh, and from
    # the folder reopened and paged through again.
    assert pages[-1], f"the last page of photos/ is empty: pages of {[len(p) for p in pages]} {where}"
    gone = pages[-1][0]
    di = rng.choice([i for i in range(CLUSTER_NODES) if i != ci])
    rest(nodes[di], "DELETE", f"/objects/{bucket}/{gone}")
    page.click('[aria-label="Refresh"]')
    expect(page.locator("#list-status")).to_have_text(re.compile(rf"^Page {len(pages)} · "))
    shown = page.locator("#listing tr.object").evaluate_all("rows => rows.map(r => r.dataset.key)")
    assert shown == pages[-1][1:], f"the last page refreshed after deleting {gone} through n{di + 1} {where}"
    left = [k for k in photos if k != gone]
    page.click(f'#breadcrumbs a:has-text("{bucket}")')
    expect(crumbs).to_have_text(bucket)
    page.click('tr.folder[data-prefix="photos/"] a')
    expect(crumbs).to_have_text(re.compile(r"^gallery\s*/\s*photos$"))
    folders, objects, _ = browse_all_pages(page)
    assert (folders, objects) == ([], left), f"photos/ reopened after deleting {gone} through n{di + 1} {where}"

    # The cluster view: every node with the objects it holds itself.
    counts = poll(
        f"the delete of {gone} on every replica",
        lambda: cluster.held_counts(len(keys) - 1, CLUSTER_RF),
        details=lambda: str([cluster.own_status(n) for n in nodes]),
    )
    page.click('.views a[data-view="cluster"]')
    expect(page.locator("#nodes tbody tr")).to_have_count(CLUSTER_NODES)
    expect(page.locator("#nodes thead th").nth(5)).to_have_text("Objects held")
    expect(page.locator(".cards")).to_contain_text(f"{CLUSTER_NODES} / {CLUSTER_NODES} alive")
    for n, count in zip(nodes, counts):
        cell = page.locator(f'#nodes tr[data-node="{n.node_id}"] td[data-label="Objects held"]')
        expect(cell).to_have_text(str(count))
    console.shot("cluster-five-nodes")

    # The metrics page: this node's own count, labelled as such.
    page.click('.views a[data-view="metrics"]')
    expect(page.locator("#metrics-node")).to_have_text(node.node_id)
    card = page.locator('[data-metric="objects"]')
    expect(card.locator(".stat-label")).to_have_text("Objects on this node")
    expect(card.locator(".stat-value")).to_have_text(str(counts[ci]))
    console.shot("metrics-cluster-node")
    console.close()
