"""Client compatibility: the seed README's Python (Requests) example, with auth.

Runs against the real `bucketdb server` binary (env BUCKETDB_BIN, default
<repo>/target/debug/bucketdb), started on fresh temp dirs with a free loopback port and
the root credentials it generates on first start.

    python3 -m venv /tmp/pyvenv
    /tmp/pyvenv/bin/pip install -r tests/python/requirements.txt
    cargo build
    BUCKETDB_BIN=$PWD/target/debug/bucketdb /tmp/pyvenv/bin/pytest -q tests/python
"""

import hashlib
import os
import stat
import tomllib

import pytest
import requests
from conftest import Node

REQUEST_TIMEOUT = 60.0


# ---------------------------------------------------------------------------------------
# The seed README's example, verbatim except for `auth=` (the spec requires credentials),
# the base URL coming from the fixture, and returning the response for the asserts.


def seed_example(BASE_URL, AUTH):
    def upload_file(path, bucket, key):
        with open(path, 'rb') as f:
            resp = requests.post(f"{BASE_URL}/objects/{bucket}/{key}", data=f, auth=AUTH)
            resp.raise_for_status()
            print(f"Uploaded {key}: {resp.json()}")
            return resp

    def set_policy(bucket):
        policy = {
            "bucket": bucket,
            "rules": [{"id": "cleanup", "status": "Enabled", "expirationDays": 7}]
        }
        return requests.put(f"{BASE_URL}/lifecycle/{bucket}", json=policy, auth=AUTH)

    return upload_file, set_policy


# ---------------------------------------------------------------------------------------
# The server process: `Node` from conftest.py (free loopback ports for REST and S3).


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path, 1)
    try:
        yield n
    finally:
        if n.proc.poll() is None:
            rc = n.stop()
            assert rc == 0, f"bucketdb exited with {rc} after SIGTERM; log:\n{n.log()}"


@pytest.fixture
def auth(node):
    assert node.access_key and node.secret_key, f"no generated credentials printed: {node.stdout_lines}"
    return (node.access_key, node.secret_key)


@pytest.fixture
def seed(node, auth):
    return seed_example(node.base_url, auth)


DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024


def reported_sha256(data, chunk_size=DEFAULT_CHUNK_SIZE):
    """What BucketDB reports as an object's SHA-256 (`x-bucketdb-sha256`, `sha256`): the
    content's digest when it fits in one chunk, else the digest of the chunk digests with
    `-<chunk count>` appended (like S3's multipart ETag)."""
    if len(data) <= chunk_size:
        return hashlib.sha256(data).hexdigest()
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]
    outer = hashlib.sha256(b"".join(hashlib.sha256(c).digest() for c in chunks))
    return f"{outer.hexdigest()}-{len(chunks)}"


def write_file(path, data):
    path.write_bytes(data)
    return path


def assert_json_error(resp, status, code=None):
    assert resp.status_code == status, resp.text
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    err = resp.json()["error"]
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str)
    assert isinstance(err["requestId"], str) and err["requestId"]
    if code is not None:
        assert err["code"] == code, err


# ---------------------------------------------------------------------------------------
# Tests.


def test_first_start_generates_private_credentials(node, auth, tmp_path):
    cred_file = node.meta / "credentials.toml"
    assert cred_file.is_file(), list(node.meta.iterdir())
    mode = stat.S_IMODE(cred_file.stat().st_mode)
    assert mode == 0o600, oct(mode)
    stored = tomllib.loads(cred_file.read_text())
    assert (stored["access_key"], stored["secret_key"]) == auth
    r = requests.get(f"{node.base_url}/buckets", auth=auth, timeout=REQUEST_TIMEOUT)
    assert r.status_code == 200, r.text

    # A restart keeps the stored credentials and does not print them again.
    assert node.stop() == 0
    again = Node(tmp_path, 2)
    try:
        assert again.access_key is None and again.secret_key is None, again.stdout_lines
        assert again.node_id == node.node_id
        r = requests.get(f"{again.base_url}/buckets", auth=auth, timeout=REQUEST_TIMEOUT)
        assert r.status_code == 200, r.text
    finally:
        assert again.stop() == 0, again.log()


@pytest.mark.parametrize("key", ["image.png", "photos/2024/summer beach.png"])
def test_seed_upload_file(seed, node, auth, tmp_path, key):
    upload_file, _ = seed
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(1000)
    path = write_file(tmp_path / "image.png", data)
    resp = upload_file(path, "assets", key)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    for field in ("key", "bucket", "size", "versionId", "etag"):
        assert field in body, body
    assert body["key"] == key
    assert body["bucket"] == "assets"
    assert body["size"] == len(data)
    # New buckets are unversioned: S3's "null" version id.
    assert body["versionId"] == "null"
    assert body["etag"].strip('"') == hashlib.md5(data).hexdigest()

    got = requests.get(f"{node.base_url}/objects/assets/{key}", auth=auth, timeout=REQUEST_TIMEOUT)
    assert got.status_code == 200
    assert got.content == data


def test_seed_set_policy(seed, node, auth, tmp_path):
    upload_file, set_policy = seed
    upload_file(write_file(tmp_path / "app.log", b"log line\n"), "logs", "2023/app.log")
    resp = set_policy("logs")
    assert 200 <= resp.status_code < 300, resp.text

    got = requests.get(f"{node.base_url}/lifecycle/logs", auth=auth, timeout=REQUEST_TIMEOUT)
    assert got.status_code == 200, got.text
    rules = got.json()["rules"]
    assert len(rules) == 1, rules
    rule = rules[0]
    assert rule["id"] == "cleanup"
    assert rule["status"] == "Enabled"
    assert rule["expirationDays"] == 7
    assert rule.get("prefix", "") == ""


def test_streaming_download_of_5mib(seed, node, auth, tmp_path):
    upload_file, _ = seed
    data = os.urandom(5 * 1024 * 1024)
    want = hashlib.sha256(data).hexdigest()
    resp = upload_file(write_file(tmp_path / "video.mp4", data), "movies", "video.mp4")
    assert resp.json()["size"] == len(data)

    h = hashlib.sha256()
    received = 0
    pieces = 0
    with requests.get(
        f"{node.base_url}/objects/movies/video.mp4", auth=auth, stream=True, timeout=REQUEST_TIMEOUT
    ) as r:
        assert r.status_code == 200, r.text
        assert r.headers["Content-Length"] == str(len(data))
        assert r.headers.get("Accept-Ranges") == "bytes"
        assert r.headers.get("x-bucketdb-sha256") == reported_sha256(data)
        for piece in r.iter_content(chunk_size=64 * 1024):
            h.update(piece)
            received += len(piece)
            pieces += 1
    assert received == len(data)
    assert pieces > 1
    assert h.hexdigest() == want


def test_requests_without_valid_auth_get_401_json(seed, node, auth, tmp_path):
    upload_file, _ = seed
    upload_file(write_file(tmp_path / "a.txt", b"secret"), "private", "a.txt")
    base = node.base_url

    r = requests.post(f"{base}/objects/private/b.txt", data=b"nope", timeout=REQUEST_TIMEOUT)
    assert_json_error(r, 401)
    r = requests.get(f"{base}/objects/private/a.txt", timeout=REQUEST_TIMEOUT)
    assert_json_error(r, 401)
    # A wrong secret is refused too (S3's 403 SignatureDoesNotMatch, or 401).
    r = requests.get(f"{base}/objects/private/a.txt", auth=(auth[0], auth[1] + "x"), timeout=REQUEST_TIMEOUT)
    assert r.status_code in (401, 403), r.text
    assert_json_error(r, r.status_code)
    assert r.content != b"secret"
    r = requests.put(
        f"{base}/lifecycle/private",
        json={"rules": [{"id": "x", "status": "Enabled", "expirationDays": 1}]},
        timeout=REQUEST_TIMEOUT,
    )
    assert_json_error(r, 401)

    # Nothing was written by the rejected upload.
    r = requests.get(f"{base}/objects/private/b.txt", auth=auth, timeout=REQUEST_TIMEOUT)
    assert_json_error(r, 404, "NoSuchKey")
    # Health stays public.
    assert requests.get(f"{base}/health/live", timeout=REQUEST_TIMEOUT).status_code == 200


def test_range_request_returns_206(seed, node, auth, tmp_path):
    upload_file, _ = seed
    data = os.urandom(300 * 1024)
    upload_file(write_file(tmp_path / "clip.bin", data), "media", "clip.bin")
    url = f"{node.base_url}/objects/media/clip.bin"

    r = requests.get(url, auth=auth, headers={"Range": "bytes=100-199"}, timeout=REQUEST_TIMEOUT)
    assert r.status_code == 206, r.text
    assert r.content == data[100:200]
    assert r.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert r.headers["Content-Length"] == "100"

    # Across the whole object's tail, and a suffix range.
    r = requests.get(url, auth=auth, headers={"Range": "bytes=200000-"}, timeout=REQUEST_TIMEOUT)
    assert r.status_code == 206
    assert r.content == data[200000:]
    r = requests.get(url, auth=auth, headers={"Range": "bytes=-10"}, timeout=REQUEST_TIMEOUT)
    assert r.status_code == 206
    assert r.content == data[-10:]

    # Streaming a range works too.
    with requests.get(
        url, auth=auth, headers={"Range": "bytes=1000-99999"}, stream=True, timeout=REQUEST_TIMEOUT
    ) as r:
        assert r.status_code == 206
        got = b"".join(r.iter_content(chunk_size=8192))
    assert got == data[1000:100000]

    r = requests.get(url, auth=auth, headers={"Range": f"bytes={len(data)}-"}, timeout=REQUEST_TIMEOUT)
    assert r.status_code == 416
