"""S3 client compatibility: real clients, unmodified, against the real `bucketdb server`.

Clients: boto3 and the awscli (current releases with default settings, pinned in
requirements.txt), minio-py, and the Debian packages rclone and s3cmd (skipped when not
installed; scripts/test.sh installs them). Every client round-trips data and compares
SHA-256 digests. One server serves the whole module (free loopback ports, temp dirs,
fixed test credentials); each test works in its own bucket(s).

Over plain http boto3 and the awscli sign the payload and send checksums as headers. What
they send to AWS by default -- `aws-chunked` bodies with `STREAMING-UNSIGNED-PAYLOAD-TRAILER`
and the checksum in a trailer -- they only send over https, so some tests go through a
TLS-terminating proxy (conftest.TlsProxy, self-signed certificate made with openssl).

    python3 -m venv /tmp/compat-venv
    /tmp/compat-venv/bin/pip install -r tests/python/requirements.txt
    cargo build
    BUCKETDB_BIN=$PWD/target/debug/bucketdb /tmp/compat-venv/bin/pytest -q tests/python
"""

import base64
import hashlib
import io
import itertools
import json
import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import zlib

import boto3
import pytest
import requests
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from conftest import Node, TlsProxy, make_self_signed_cert

MiB = 1024 * 1024
REQUEST_TIMEOUT = 60.0
CLI_TIMEOUT = 120.0
REGION = "us-east-1"
ACCESS_KEY = "compat-access-key"
SECRET_KEY = "compat-" + secrets.token_hex(16)

# Signature Version 4 for presigned URLs. boto3 and the awscli presign with Signature
# Version 2 by default in regions that still list it (us-east-1 among them), and
# BucketDB refuses SigV2 (see test_default_presign_is_sigv2_and_refused).
SIGV4 = Config(signature_version="s3v4")


# ---------------------------------------------------------------------------------------
# Fixtures and helpers.


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("bucketdb-s3"), 1, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    try:
        yield n
    finally:
        if n.proc.poll() is None:
            rc = n.stop()
            assert rc == 0, f"bucketdb exited with {rc} after SIGTERM; log:\n{n.log_tail()}"


@pytest.fixture(scope="module", autouse=True)
def clean_client_env():
    """No AWS_* settings of the machine (profiles, CA bundles, endpoints) leak into the
    in-process clients; credentials and endpoints are always passed explicitly."""
    with pytest.MonkeyPatch.context() as mp:
        for k in list(os.environ):
            if k.startswith("AWS_"):
                mp.delenv(k)
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.setenv("no_proxy", "127.0.0.1,localhost")
        yield


@pytest.fixture(autouse=True)
def server_log_on_failure(request, node):
    """On a failed test, prints the server log lines written during it (one line per
    request with its status) so the failing S3 request can be identified."""
    start = node.log_path.stat().st_size if node.log_path.exists() else 0
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        with open(node.log_path, "rb") as f:
            f.seek(start)
            print(f"---- bucketdb log during {request.node.name} ----")
            print(f.read().decode(errors="replace")[-20000:])


_bucket_seq = itertools.count(1)


@pytest.fixture
def bucket_name():
    """A fresh, valid bucket name per call: `<prefix>-<n>-<random>`."""

    def make(prefix="b"):
        return f"{prefix}-{next(_bucket_seq)}-{secrets.token_hex(3)}"

    return make


@pytest.fixture(scope="module")
def tls(node, tmp_path_factory):
    made = make_self_signed_cert(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("openssl not installed: cannot make a certificate for the TLS (aws-chunked trailer) tests")
    proxy = TlsProxy(node.s3_url, *made)
    yield proxy
    proxy.close()


def boto3_client(endpoint, secret_key=SECRET_KEY, **kw):
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=secret_key,
        region_name=REGION,
        **kw,
    )


@pytest.fixture(scope="module")
def s3(node):
    """boto3 with default settings (plus the endpoint and keys)."""
    return boto3_client(node.s3_url)


@pytest.fixture(scope="module")
def s3_tls(tls):
    """boto3 with default settings over https: sends aws-chunked bodies with trailers."""
    return boto3_client(tls.url, verify=tls.ca_bundle)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(MiB):
            h.update(piece)
    return h.hexdigest()


def tree_digests(root):
    """{relative posix path: SHA-256} of every file under root."""
    root = pathlib.Path(root)
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def write_random(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MiB)
            f.write(os.urandom(n))
            left -= n
    return path


# Keys chosen to exercise URL encoding in every client: spaces, '+', '&', '=', unicode,
# nesting, an empty file, and one file large enough for the clients' multipart uploads
# (the awscli's default threshold is 8 MiB; rclone and s3cmd are told 5 MiB).
TREE_FILES = {
    "top.txt": 1000,
    "empty.txt": 0,
    "a/b/c/deep.bin": 70 * 1024,
    "space dir/file name.txt": 300,
    "special/a+b=c&d.txt": 42,
    "unicode/ünïcødé-文件.bin": 5000,
    "big/multipart.bin": 12 * MiB + 123,
}


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    for rel, size in TREE_FILES.items():
        write_random(root / rel, size)
    return root


def run(node, cmd, env, timeout=CLI_TIMEOUT, check=True, cwd=None):
    """Runs a client command; on failure the message has its output and the server log."""
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{cmd} timed out after {timeout}s; output:\n{e.stdout}\n{e.stderr}\nserver log:\n{node.log_tail()}")
    if check and p.returncode != 0:
        pytest.fail(
            f"{cmd} exited with {p.returncode}\nstdout:\n{p.stdout[-5000:]}\nstderr:\n{p.stderr[-5000:]}\n"
            f"server log (tail):\n{node.log_tail()}"
        )
    return p


def base_env(tmp_path):
    """The machine's environment without AWS_/RCLONE_/S3CMD settings (the sandbox or CI
    may set AWS_CA_BUNDLE, profiles, proxies), HOME in the temp dir, loopback unproxied."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "RCLONE_", "S3CMD")) and k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    }
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env["HOME"] = str(home)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def error_code(exc_info):
    return exc_info.value.response["Error"]["Code"], exc_info.value.response["ResponseMetadata"]["HTTPStatusCode"]


# ---------------------------------------------------------------------------------------
# boto3.


def test_boto3_buckets(s3, bucket_name):
    name = bucket_name("boto")
    s3.create_bucket(Bucket=name)
    s3.head_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.get_bucket_location(Bucket=name).get("LocationConstraint") in (None, "", REGION)
    s3.delete_bucket(Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=name)
    assert error_code(e)[1] == 404


def test_boto3_put_get_head_delete(s3, bucket_name):
    b = bucket_name("boto")
    s3.create_bucket(Bucket=b)
    data = os.urandom(300 * 1024)
    put = s3.put_object(
        Bucket=b,
        Key="dir/obj.bin",
        Body=data,
        ContentType="application/x-compat",
        Metadata={"color": "blue", "Mixed-Case": "Value 1"},
    )
    assert put["ETag"].strip('"') == hashlib.md5(data).hexdigest()

    got = s3.get_object(Bucket=b, Key="dir/obj.bin")
    assert sha256(got["Body"].read()) == sha256(data)
    assert got["ContentLength"] == len(data)
    assert got["ContentType"] == "application/x-compat"
    assert got["Metadata"] == {"color": "blue", "mixed-case": "Value 1"}

    head = s3.head_object(Bucket=b, Key="dir/obj.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == put["ETag"]
    assert head["ContentType"] == "application/x-compat"
    assert head["Metadata"] == {"color": "blue", "mixed-case": "Value 1"}
    assert head["LastModified"] is not None

    # A file object body (read in pieces, like from disk) and an empty object.
    s3.put_object(Bucket=b, Key="fileobj", Body=io.BytesIO(data))
    assert sha256(s3.get_object(Bucket=b, Key="fileobj")["Body"].read()) == sha256(data)
    s3.put_object(Bucket=b, Key="empty", Body=b"")
    assert s3.get_object(Bucket=b, Key="empty")["Body"].read() == b""
    assert s3.head_object(Bucket=b, Key="empty")["ContentLength"] == 0

    s3.delete_object(Bucket=b, Key="dir/obj.bin")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=b, Key="dir/obj.bin")
    assert error_code(e) == ("NoSuchKey", 404)
    # Deleting a missing key succeeds, as in S3.
    s3.delete_object(Bucket=b, Key="dir/obj.bin")


def test_boto3_content_md5_checked(s3, bucket_name):
    b = bucket_name("boto")
    s3.create_bucket(Bucket=b)
    data = b"checked body"
    good = base64.b64encode(hashlib.md5(data).digest()).decode()
    s3.put_object(Bucket=b, Key="ok", Body=data, ContentMD5=good)
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=b, Key="bad", Body=data, ContentMD5=bad)
    assert error_code(e) == ("BadDigest", 400)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=b, Key="bad")
    assert error_code(e)[1] == 404


def test_boto3_ranges(s3, bucket_name):
    b = bucket_name("boto")
    s3.create_bucket(Bucket=b)
    data = os.urandom(100_000)
    s3.put_object(Bucket=b, Key="r", Body=data)

    r = s3.get_object(Bucket=b, Key="r", Range="bytes=10-19")
    assert r["Body"].read() == data[10:20]
    assert r["ContentRange"] == f"bytes 10-19/{len(data)}"
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert s3.get_object(Bucket=b, Key="r", Range="bytes=-5")["Body"].read() == data[-5:]
    assert s3.get_object(Bucket=b, Key="r", Range="bytes=99990-")["Body"].read() == data[99990:]
    # A range past the end is clamped.
    assert s3.get_object(Bucket=b, Key="r", Range="bytes=99000-200000")["Body"].read() == data[99000:]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=b, Key="r", Range=f"bytes={len(data)}-")
    assert error_code(e) == ("InvalidRange", 416)


def test_boto3_list_objects_v2_pagination(s3, bucket_name):
    b = bucket_name("boto")
    s3.create_bucket(Bucket=b)
    keys = [f"logs/{i:03d}.txt" for i in range(25)] + ["other/x", "top"]
    for k in keys:
        s3.put_object(Bucket=b, Key=k, Body=k.encode())

    pages = list(
        s3.get_paginator("list_objects_v2").paginate(Bucket=b, Prefix="logs/", PaginationConfig={"PageSize": 10})
    )
    assert [len(p.get("Contents", [])) for p in pages] == [10, 10, 5]
    listed = [o["Key"] for p in pages for o in p["Contents"]]
    assert listed == sorted(k for k in keys if k.startswith("logs/"))
    assert all(o["Size"] == len(o["Key"]) for p in pages for o in p["Contents"])

    # The whole bucket, and the delimiter view.
    everything = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=b) for o in p["Contents"]]
    assert everything == sorted(keys)
    top = s3.list_objects_v2(Bucket=b, Delimiter="/")
    assert [c["Prefix"] for c in top["CommonPrefixes"]] == ["logs/", "other/"]
    assert [o["Key"] for o in top["Contents"]] == ["top"]
    after = s3.list_objects_v2(Bucket=b, Prefix="logs/", StartAfter="logs/020.txt")
    assert [o["Key"] for o in after["Contents"]] == [f"logs/{i:03d}.txt" for i in range(21, 25)]
    # ListObjects v1 through its paginator too.
    v1 = [o["Key"] for p in s3.get_paginator("list_objects").paginate(Bucket=b, PaginationConfig={"PageSize": 7}) for o in p["Contents"]]
    assert v1 == sorted(keys)


def test_boto3_multipart_upload_and_download_20mib(s3, bucket_name):
    b = bucket_name("boto")
    s3.create_bucket(Bucket=b)
    data = os.urandom(20 * MiB)
    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_fileobj(io.BytesIO(data), b, "big.bin", Config=cfg)

    head = s3.head_object(Bucket=b, Key="big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-4"), head["ETag"]  # 4 parts of 5 MiB

    out = io.BytesIO()
    s3.download_fileobj(b, "big.bin", out, Config=cfg)
    assert sha256(out.getvalue()) == sha256(data)
    # A range across the part boundary.
    r = s3.get_object(Bucket=b, Key="big.bin", Range=f"bytes={5 * MiB - 10}-{5 * MiB + 9}")
    assert r["Body"].read() == data[5 * MiB - 10:5 * MiB + 10]
    # No upload left behind.
    assert not s3.list_multipart_uploads(Bucket=b).get("Uploads")


def test_boto3_copy_object(s3, bucket_name):
    src, dst = bucket_name("boto"), bucket_name("boto")
    s3.create_bucket(Bucket=src)
    s3.create_bucket(Bucket=dst)
    data = os.urandom(150 * 1024)
    s3.put_object(Bucket=src, Key="orig", Body=data, Metadata={"k": "v"}, ContentType="text/x-orig")

    s3.copy_object(Bucket=dst, Key="copy", CopySource={"Bucket": src, "Key": "orig"})
    got = s3.get_object(Bucket=dst, Key="copy")
    assert sha256(got["Body"].read()) == sha256(data)
    assert got["Metadata"] == {"k": "v"}
    assert got["ContentType"] == "text/x-orig"

    s3.copy_object(
        Bucket=src,
        Key="replaced",
        CopySource={"Bucket": src, "Key": "orig"},
        MetadataDirective="REPLACE",
        Metadata={"new": "1"},
        ContentType="text/x-new",
    )
    head = s3.head_object(Bucket=src, Key="replaced")
    assert head["Metadata"] == {"new": "1"}
    assert head["ContentType"] == "text/x-new"
    assert sha256(s3.get_object(Bucket=src, Key="replaced")["Body"].read()) == sha256(data)

    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=dst, Key="x", CopySource={"Bucket": src, "Key": "missing"})
    assert error_code(e) == ("NoSuchKey", 404)


def test_boto3_delete_objects(s3, bucket_name):
    b = bucket_name("boto")
    s3.create_bucket(Bucket=b)
    keys = [f"d/{i}" for i in range(30)]
    for k in keys:
        s3.put_object(Bucket=b, Key=k, Body=b"x")
    s3.put_object(Bucket=b, Key="keep", Body=b"y")

    out = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": k} for k in keys + ["never-existed"]]})
    assert sorted(d["Key"] for d in out["Deleted"]) == sorted(keys + ["never-existed"])
    assert not out.get("Errors")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]] == ["keep"]

    quiet = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "keep"}], "Quiet": True})
    assert not quiet.get("Deleted") and not quiet.get("Errors")
    assert s3.list_objects_v2(Bucket=b)["KeyCount"] == 0


def test_boto3_versioning(s3, bucket_name):
    b = bucket_name("boto")
    s3.create_bucket(Bucket=b)
    assert s3.get_bucket_versioning(Bucket=b).get("Status") is None
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"

    v1 = s3.put_object(Bucket=b, Key="doc", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=b, Key="doc", Body=b"two")["VersionId"]
    assert v1 and v2 and v1 != v2
    assert s3.get_object(Bucket=b, Key="doc")["Body"].read() == b"two"
    assert s3.get_object(Bucket=b, Key="doc", VersionId=v1)["Body"].read() == b"one"

    deleted = s3.delete_object(Bucket=b, Key="doc")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=b, Key="doc")
    assert error_code(e) == ("NoSuchKey", 404)

    listing = s3.list_object_versions(Bucket=b, Prefix="doc")
    versions = {v["VersionId"]: v for v in listing["Versions"]}
    assert set(versions) == {v1, v2}
    assert not any(v["IsLatest"] for v in versions.values())
    assert versions[v1]["Size"] == 3
    markers = listing["DeleteMarkers"]
    assert [(m["VersionId"], m["IsLatest"]) for m in markers] == [(marker, True)]

    # Removing the delete marker brings v2 back; deleting v2 for good leaves v1.
    s3.delete_object(Bucket=b, Key="doc", VersionId=marker)
    assert s3.get_object(Bucket=b, Key="doc")["Body"].read() == b"two"
    s3.delete_object(Bucket=b, Key="doc", VersionId=v2)
    assert s3.get_object(Bucket=b, Key="doc")["Body"].read() == b"one"
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket=b)["Versions"]] == [v1]

    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Suspended"


def test_boto3_object_tagging(s3, bucket_name):
    b = bucket_name("boto")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="t", Body=b"tagged", Tagging="team=storage&tier=hot")
    tags = s3.get_object_tagging(Bucket=b, Key="t")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("team", "storage"), ("tier", "hot")]
    assert s3.get_object(Bucket=b, Key="t")["TagCount"] == 2

    s3.put_object_tagging(Bucket=b, Key="t", Tagging={"TagSet": [{"Key": "only", "Value": "one tag"}]})
    assert s3.get_object_tagging(Bucket=b, Key="t")["TagSet"] == [{"Key": "only", "Value": "one tag"}]
    s3.delete_object_tagging(Bucket=b, Key="t")
    assert s3.get_object_tagging(Bucket=b, Key="t")["TagSet"] == []
    # The data is untouched by tagging.
    assert s3.get_object(Bucket=b, Key="t")["Body"].read() == b"tagged"


def test_boto3_presigned_get_and_put(node, bucket_name):
    s3v4 = boto3_client(node.s3_url, config=SIGV4)
    b = bucket_name("boto")
    s3v4.create_bucket(Bucket=b)
    data = os.urandom(64 * 1024 + 7)
    s3v4.put_object(Bucket=b, Key="shared.bin", Body=data)

    url = s3v4.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "shared.bin"}, ExpiresIn=300)
    assert "X-Amz-Signature=" in url
    r = requests.get(url, timeout=REQUEST_TIMEOUT)
    assert r.status_code == 200, r.text
    assert sha256(r.content) == sha256(data)

    # A changed signature or another key with the same signature is refused.
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    r = requests.get(tampered, timeout=REQUEST_TIMEOUT)
    assert r.status_code == 403 and "SignatureDoesNotMatch" in r.text, r.text

    upload = os.urandom(10_000)
    url = s3v4.generate_presigned_url(
        "put_object", Params={"Bucket": b, "Key": "uploaded.bin", "ContentType": "image/png"}, ExpiresIn=300
    )
    r = requests.put(url, data=upload, headers={"Content-Type": "image/png"}, timeout=REQUEST_TIMEOUT)
    assert r.status_code == 200, r.text
    got = s3v4.get_object(Bucket=b, Key="uploaded.bin")
    assert sha256(got["Body"].read()) == sha256(upload)
    assert got["ContentType"] == "image/png"


def test_default_presign_is_sigv2_and_refused(s3, bucket_name):
    """boto3 (and `aws s3 presign`) presign with Signature Version 2 by default in
    us-east-1; BucketDB refuses SigV2, cleanly, with S3's AccessDenied XML. Users need
    `signature_version='s3v4'` (README)."""
    b = bucket_name("boto")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"data")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "k"}, ExpiresIn=300)
    assert "AWSAccessKeyId=" in url and "Signature=" in url, url
    r = requests.get(url, timeout=REQUEST_TIMEOUT)
    assert r.status_code == 403, r.text
    assert "<Code>AccessDenied</Code>" in r.text
    assert b"data" != r.content


def test_boto3_error_codes(s3, bucket_name):
    b = bucket_name("boto")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="present", Body=b"x")

    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=b, Key="absent")
    assert error_code(e) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=b, Key="absent")
    assert error_code(e)[1] == 404  # HEAD has no body: boto3 reports the status

    missing = bucket_name("nobucket")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=missing, Key="k")
    assert error_code(e) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket=missing)
    assert error_code(e) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=missing, Key="k", Body=b"x")
    assert error_code(e) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=missing)
    assert error_code(e) == ("NoSuchBucket", 404)

    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=b)
    assert error_code(e) == ("BucketNotEmpty", 409)
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=b)
    assert error_code(e)[0] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")

    s3.delete_object(Bucket=b, Key="present")
    s3.delete_bucket(Bucket=b)

    wrong = boto3_client(s3.meta.endpoint_url, secret_key=SECRET_KEY + "x")
    with pytest.raises(ClientError) as e:
        wrong.list_buckets()
    assert error_code(e) == ("SignatureDoesNotMatch", 403)


def test_boto3_upload_after_empty_upload_on_same_connection(node, bucket_name):
    """An empty file-like body gets 'Expect: 100-continue', which the server answers with
    the final 200 at once (no body to wait for); the next PUT on that pooled connection
    must not stall (boto/botocore#3755, fixed in the botocore boto3 uses)."""
    s3 = boto3_client(
        node.s3_url, config=Config(max_pool_connections=1, read_timeout=5, retries={"max_attempts": 1, "mode": "standard"})
    )
    b = bucket_name("boto")
    s3.create_bucket(Bucket=b)
    for i in range(3):
        s3.put_object(Bucket=b, Key=f"{i}-empty", Body=io.BytesIO(b""))
        s3.put_object(Bucket=b, Key=f"{i}-full", Body=io.BytesIO(b"data %d" % i))
    assert s3.get_object(Bucket=b, Key="2-full")["Body"].read() == b"data 2"
    assert s3.get_object(Bucket=b, Key="2-empty")["Body"].read() == b""


# boto3 over https: aws-chunked bodies with checksum trailers (its default towards AWS).


def record_content_sha256(client):
    """Collects the x-amz-content-sha256 of every request the client sends."""
    seen = []

    def before_send(request, **kwargs):
        value = request.headers.get("x-amz-content-sha256")
        seen.append((request.method, value.decode() if isinstance(value, bytes) else value))

    client.meta.events.register("before-send.s3", before_send)
    return seen


def test_boto3_checksum_trailers_over_tls(s3_tls, bucket_name):
    s3 = s3_tls
    seen = record_content_sha256(s3)
    b = bucket_name("boto-tls")
    s3.create_bucket(Bucket=b)
    data = os.urandom(200 * 1024 + 3)

    s3.put_object(Bucket=b, Key="crc32", Body=io.BytesIO(data))  # default: CRC32 trailer
    s3.put_object(Bucket=b, Key="sha256", Body=io.BytesIO(data), ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket=b, Key="sha1", Body=io.BytesIO(data), ChecksumAlgorithm="SHA1")
    s3.put_object(Bucket=b, Key="bytes", Body=data)
    big = os.urandom(12 * MiB + 5)
    s3.upload_fileobj(
        io.BytesIO(big), b, "multipart", Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    )
    puts = [h for m, h in seen if m == "PUT" and h != "UNSIGNED-PAYLOAD" and h is not None]
    assert puts.count("STREAMING-UNSIGNED-PAYLOAD-TRAILER") >= 4 + 3, seen  # really aws-chunked

    for key in ("crc32", "sha256", "sha1", "bytes"):
        assert sha256(s3.get_object(Bucket=b, Key=key)["Body"].read()) == sha256(data), key
    out = io.BytesIO()
    s3.download_fileobj(b, "multipart", out)
    assert sha256(out.getvalue()) == sha256(big)
    assert s3.head_object(Bucket=b, Key="multipart")["ContentLength"] == len(big)


def test_boto3_checksum_returned_when_asked(s3_tls, bucket_name):
    s3 = s3_tls
    b = bucket_name("boto-tls")
    s3.create_bucket(Bucket=b)
    data = os.urandom(50_000)
    s3.put_object(Bucket=b, Key="k", Body=io.BytesIO(data), ChecksumAlgorithm="SHA256")
    want = base64.b64encode(hashlib.sha256(data).digest()).decode()
    head = s3.head_object(Bucket=b, Key="k", ChecksumMode="ENABLED")
    assert head.get("ChecksumSHA256") == want, head["ResponseMetadata"]["HTTPHeaders"]
    got = s3.get_object(Bucket=b, Key="k", ChecksumMode="ENABLED")
    assert got.get("ChecksumSHA256") == want, got["ResponseMetadata"]["HTTPHeaders"]


def test_boto3_wrong_checksum_header_rejected(s3, bucket_name):
    b = bucket_name("boto")
    s3.create_bucket(Bucket=b)
    wrong = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=b, Key="k", Body=b"payload", ChecksumSHA256=wrong)
    assert error_code(e) == ("BadDigest", 400)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=b, Key="k2", Body=b"payload", ChecksumCRC32="AAAAAA==")
    assert error_code(e) == ("BadDigest", 400)
    assert s3.list_objects_v2(Bucket=b)["KeyCount"] == 0
    # The right ones are accepted.
    right = base64.b64encode(hashlib.sha256(b"payload").digest()).decode()
    s3.put_object(Bucket=b, Key="k", Body=b"payload", ChecksumSHA256=right)
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"payload"


def signed_trailer_put(node, bucket, key, data, trailer_name, trailer_value):
    """A PutObject as boto3 sends it over https (aws-chunked, STREAMING-UNSIGNED-PAYLOAD-
    TRAILER) but with the trailer's checksum chosen by the caller; signed by botocore."""
    body = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n" + f"{trailer_name}:{trailer_value}\r\n\r\n".encode()
    headers = {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Decoded-Content-Length": str(len(data)),
        "X-Amz-Trailer": trailer_name,
        "X-Amz-Sdk-Checksum-Algorithm": trailer_name.rsplit("-", 1)[1].upper(),
        "Content-Length": str(len(body)),
    }
    req = AWSRequest(method="PUT", url=f"{node.s3_url}/{bucket}/{key}", data=body, headers=headers)
    req.context["checksum"] = {"request_algorithm": {"in": "trailer", "name": trailer_name}}
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(req)
    assert req.headers["X-Amz-Content-SHA256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    prepared = req.prepare()
    return requests.put(prepared.url, data=body, headers=dict(prepared.headers), timeout=REQUEST_TIMEOUT)


def test_aws_chunked_trailer_with_right_checksum(s3, node, bucket_name):
    b = bucket_name("trailer")
    s3.create_bucket(Bucket=b)
    data = b"trailer checked body " * 100
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    r = signed_trailer_put(node, b, "good", data, "x-amz-checksum-crc32", crc)
    assert r.status_code == 200, r.text
    assert s3.get_object(Bucket=b, Key="good")["Body"].read() == data


@pytest.mark.parametrize("trailer", ["x-amz-checksum-crc32", "x-amz-checksum-sha256"])
def test_aws_chunked_trailer_with_wrong_checksum_rejected(s3, node, bucket_name, trailer):
    b = bucket_name("trailer")
    s3.create_bucket(Bucket=b)
    data = b"trailer checked body " * 100
    wrong = {
        "x-amz-checksum-crc32": base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode(),
        "x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(b"other").digest()).decode(),
    }[trailer]
    r = signed_trailer_put(node, b, "bad", data, trailer, wrong)
    assert r.status_code == 400, (r.status_code, r.text)
    assert "<Code>BadDigest</Code>" in r.text, r.text
    with pytest.raises(ClientError):
        s3.head_object(Bucket=b, Key="bad")


# ---------------------------------------------------------------------------------------
# awscli (`aws` from this venv).


AWS = shutil.which("aws", path=str(pathlib.Path(sys.executable).parent)) or str(pathlib.Path(sys.executable).parent / "aws")


def aws_env(tmp_path):
    """The environment of an `aws` run: base_env, the test keys, no config files."""
    if not os.access(AWS, os.X_OK):
        pytest.fail(f"the awscli is not installed next to {sys.executable} (pip install -r tests/python/requirements.txt)")
    env = base_env(tmp_path)
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
        # The workaround botocore offers for its bug #3755 (see
        # test_awscli_upload_after_empty_file_on_same_connection): without it, every
        # non-empty upload that follows an empty file's on the same connection stalls 60 s.
        BOTO_EXPERIMENTAL__NO_EMPTY_CONTINUE="true",
    )
    return env


@pytest.fixture
def aws(node, tmp_path):
    """Runs `aws --endpoint-url <s3> ARGS`; returns the CompletedProcess."""
    env = aws_env(tmp_path)

    def call(*args, endpoint=None, extra_env=None, check=True):
        e = dict(env, **(extra_env or {}))
        return run(node, [AWS, "--endpoint-url", endpoint or node.s3_url, *map(str, args)], e, check=check)

    return call


def test_awscli_mb_cp_ls(aws, tmp_path, bucket_name):
    b = bucket_name("cli")
    aws("s3", "mb", f"s3://{b}")
    assert b in aws("s3", "ls").stdout

    src = write_random(tmp_path / "up.bin", 3 * MiB + 17)
    aws("s3", "cp", src, f"s3://{b}/dir/up.bin")
    aws("s3", "cp", src, f"s3://{b}/top.bin")
    down = tmp_path / "down.bin"
    aws("s3", "cp", f"s3://{b}/dir/up.bin", down)
    assert file_sha256(down) == file_sha256(src)

    listing = aws("s3", "ls", f"s3://{b}").stdout
    assert "PRE dir/" in listing
    assert f"{3 * MiB + 17} top.bin" in listing
    assert "up.bin" not in listing
    recursive = aws("s3", "ls", "--recursive", f"s3://{b}").stdout
    assert "dir/up.bin" in recursive and "top.bin" in recursive

    # A missing key: non-zero exit and the 404 in the message.
    p = aws("s3", "cp", f"s3://{b}/nope", tmp_path / "nope", check=False)
    assert p.returncode != 0 and "404" in p.stderr, p.stderr

    aws("s3", "rm", "--recursive", f"s3://{b}")
    aws("s3", "rb", f"s3://{b}")
    assert b not in aws("s3", "ls").stdout


def test_awscli_sync_tree_and_rm_recursive(aws, tree, tmp_path, bucket_name):
    b = bucket_name("cli")
    aws("s3", "mb", f"s3://{b}")
    aws("s3", "sync", tree, f"s3://{b}/tree")

    listed = aws("s3", "ls", "--recursive", f"s3://{b}/tree/").stdout.splitlines()
    keys = sorted(line.split(None, 3)[3] for line in listed if line.strip())
    assert keys == sorted(f"tree/{k}" for k in TREE_FILES)

    # A second sync has nothing to do.
    again = aws("s3", "sync", tree, f"s3://{b}/tree").stdout
    assert "upload:" not in again, again

    back = tmp_path / "back"
    aws("s3", "sync", f"s3://{b}/tree", back)
    assert tree_digests(back) == tree_digests(tree)

    removed = aws("s3", "rm", "--recursive", f"s3://{b}/tree").stdout
    assert removed.count("delete:") == len(TREE_FILES), removed
    assert aws("s3", "ls", "--recursive", f"s3://{b}", check=False).stdout.strip() == ""
    aws("s3", "rb", f"s3://{b}")


@pytest.mark.xfail(
    strict=True,
    reason="client bug boto/botocore#3755 in the botocore 1.43.62 that awscli 1.46.3 vendors "
    "(boto3's botocore 1.44.8 is fixed): after a zero-length PUT with 'Expect: 100-continue', "
    "which the server (hyper) answers at once with 200 and no '100 Continue' as RFC 9110 "
    "allows, the pooled connection keeps a stale status line and the next PUT's response "
    "is read until the 60 s read timeout, then retried",
)
def test_awscli_upload_after_empty_file_on_same_connection(aws, tmp_path, bucket_name):
    """Default CLI settings except one upload thread (one connection), no retries and a
    3 s read timeout, so the stall shows as a failure instead of a 60 s pause."""
    b = bucket_name("cli")
    aws("s3", "mb", f"s3://{b}")
    src = tmp_path / "pairs"
    src.mkdir()
    for i in range(3):
        (src / f"{i}-empty.txt").write_bytes(b"")
        (src / f"{i}-full.txt").write_bytes(b"data %d" % i)
    config = tmp_path / "aws-config"
    config.write_text("[default]\nmax_attempts = 1\ns3 =\n    max_concurrent_requests = 1\n")
    p = aws("--cli-read-timeout", "3", "s3", "sync", src, f"s3://{b}/pairs", check=False,
            extra_env={"AWS_CONFIG_FILE": str(config), "BOTO_EXPERIMENTAL__NO_EMPTY_CONTINUE": "false"})
    assert p.returncode == 0, p.stdout + p.stderr


def test_awscli_s3api(aws, tmp_path, bucket_name):
    b = bucket_name("cli")
    aws("s3api", "create-bucket", "--bucket", b)
    body = write_random(tmp_path / "body.bin", 12345)
    put = json.loads(aws("s3api", "put-object", "--bucket", b, "--key", "p/one.bin", "--body", body,
                         "--content-type", "application/x-one", "--metadata", "owner=cli,purpose=test").stdout)
    assert put["ETag"].strip('"') == hashlib.md5(body.read_bytes()).hexdigest()
    aws("s3api", "put-object", "--bucket", b, "--key", "p/two.bin", "--body", body)
    aws("s3api", "put-object", "--bucket", b, "--key", "q/three.bin", "--body", body)

    head = json.loads(aws("s3api", "head-object", "--bucket", b, "--key", "p/one.bin").stdout)
    assert head["ContentLength"] == 12345
    assert head["ContentType"] == "application/x-one"
    assert head["Metadata"] == {"owner": "cli", "purpose": "test"}
    assert head["ETag"] == put["ETag"]

    listed = json.loads(aws("s3api", "list-objects-v2", "--bucket", b, "--prefix", "p/").stdout)
    assert [o["Key"] for o in listed["Contents"]] == ["p/one.bin", "p/two.bin"]
    assert all(o["Size"] == 12345 for o in listed["Contents"])
    # The CLI's own pagination (page size 1) sees every key.
    paged = json.loads(aws("s3api", "list-objects-v2", "--bucket", b, "--page-size", "1").stdout)
    assert [o["Key"] for o in paged["Contents"]] == ["p/one.bin", "p/two.bin", "q/three.bin"]

    out = tmp_path / "got.bin"
    aws("s3api", "get-object", "--bucket", b, "--key", "p/one.bin", out)
    assert file_sha256(out) == file_sha256(body)

    p = aws("s3api", "head-object", "--bucket", b, "--key", "missing", check=False)
    assert p.returncode != 0 and "404" in p.stderr, p.stderr


def test_awscli_100mib_multipart_cp(aws, tmp_path, bucket_name):
    b = bucket_name("cli")
    aws("s3", "mb", f"s3://{b}")
    src = write_random(tmp_path / "100mib.bin", 100 * MiB)
    aws("s3", "cp", "--only-show-errors", src, f"s3://{b}/large/100mib.bin")

    head = json.loads(aws("s3api", "head-object", "--bucket", b, "--key", "large/100mib.bin").stdout)
    assert head["ContentLength"] == 100 * MiB
    assert head["ETag"].strip('"').endswith("-13"), head  # the CLI's 8 MiB parts
    down = tmp_path / "100mib.down"
    aws("s3", "cp", "--only-show-errors", f"s3://{b}/large/100mib.bin", down)
    assert file_sha256(down) == file_sha256(src)
    src.unlink()
    down.unlink()


def test_awscli_presign(aws, tmp_path, bucket_name):
    b = bucket_name("cli")
    aws("s3", "mb", f"s3://{b}")
    src = write_random(tmp_path / "share.bin", 70_000)
    aws("s3", "cp", src, f"s3://{b}/share.bin")

    config = tmp_path / "aws-config"
    config.write_text("[default]\ns3 =\n    signature_version = s3v4\n")
    url = aws("s3", "presign", f"s3://{b}/share.bin", "--expires-in", "600",
              extra_env={"AWS_CONFIG_FILE": str(config)}).stdout.strip()
    assert "X-Amz-Signature=" in url, url
    r = requests.get(url, timeout=REQUEST_TIMEOUT)
    assert r.status_code == 200, r.text
    assert sha256(r.content) == file_sha256(src)

    # Without that setting the CLI presigns with SigV2, which BucketDB refuses.
    url = aws("s3", "presign", f"s3://{b}/share.bin").stdout.strip()
    assert "AWSAccessKeyId=" in url, url
    r = requests.get(url, timeout=REQUEST_TIMEOUT)
    assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text, r.text


def test_awscli_cp_over_tls_uses_trailers(aws, tls, tmp_path, bucket_name):
    """The CLI over https, as against AWS: aws-chunked uploads with CRC32 trailers."""
    b = bucket_name("cli-tls")
    env = {"AWS_CA_BUNDLE": tls.ca_bundle}
    aws("s3", "mb", f"s3://{b}", endpoint=tls.url, extra_env=env)
    small = write_random(tmp_path / "up" / "small.bin", 200_000)
    large = write_random(tmp_path / "up" / "large.bin", 10 * MiB + 1)  # multipart (8 MiB parts)
    p = aws("--debug", "s3", "cp", "--recursive", tmp_path / "up", f"s3://{b}/up", endpoint=tls.url, extra_env=env)
    assert "STREAMING-UNSIGNED-PAYLOAD-TRAILER" in p.stderr
    back = tmp_path / "back"
    aws("s3", "cp", "--recursive", f"s3://{b}/up", back, endpoint=tls.url, extra_env=env)
    assert tree_digests(back) == {"small.bin": file_sha256(small), "large.bin": file_sha256(large)}


# ---------------------------------------------------------------------------------------
# minio-py.


def test_minio_py(node, tmp_path, bucket_name):
    from minio import Minio
    from minio.error import S3Error

    client = Minio(
        node.s3_url.removeprefix("http://"),
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        secure=False,
    )
    b = bucket_name("minio")
    client.make_bucket(b)
    assert client.bucket_exists(b)
    assert not client.bucket_exists(bucket_name("absent"))
    assert b in [x.name for x in client.list_buckets()]

    data = os.urandom(200_000)
    client.put_object(b, "docs/report.bin", io.BytesIO(data), len(data),
                      content_type="application/x-report", metadata={"x-amz-meta-owner": "minio"})
    resp = client.get_object(b, "docs/report.bin")
    try:
        assert sha256(resp.read()) == sha256(data)
    finally:
        resp.close()
        resp.release_conn()

    # fput/fget of a file big enough for a multipart upload (5 MiB parts).
    src = write_random(tmp_path / "m.bin", 11 * MiB + 5)
    client.fput_object(b, "files/m.bin", str(src), part_size=5 * MiB)
    client.fget_object(b, "files/m.bin", str(tmp_path / "m.down"))
    assert file_sha256(tmp_path / "m.down") == file_sha256(src)

    st = client.stat_object(b, "docs/report.bin")
    assert st.size == len(data)
    assert st.etag == hashlib.md5(data).hexdigest()
    assert st.content_type == "application/x-report"
    assert st.metadata.get("x-amz-meta-owner") == "minio"
    assert client.stat_object(b, "files/m.bin").size == 11 * MiB + 5

    assert sorted(o.object_name for o in client.list_objects(b, recursive=True)) == ["docs/report.bin", "files/m.bin"]
    assert sorted(o.object_name for o in client.list_objects(b)) == ["docs/", "files/"]
    assert [o.object_name for o in client.list_objects(b, prefix="files/", recursive=True)] == ["files/m.bin"]

    client.remove_object(b, "docs/report.bin")
    with pytest.raises(S3Error) as e:
        client.stat_object(b, "docs/report.bin")
    assert e.value.code == "NoSuchKey"
    client.remove_object(b, "files/m.bin")
    assert list(client.list_objects(b, recursive=True)) == []
    client.remove_bucket(b)
    assert not client.bucket_exists(b)


# ---------------------------------------------------------------------------------------
# rclone and s3cmd (Debian packages; skipped when not installed).


def need(tool):
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (scripts/test.sh installs it with apt-get: `apt-get install {tool}`)")
    return path


# rclone's multipart threshold and part size lowered to 5 MiB; no retries (a failure
# shows as it is).
RCLONE_FLAGS = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", "--retries", "1", "--low-level-retries", "1"]


def rclone_env(tmp_path):
    """The environment of an rclone run: base_env and an empty config file."""
    env = base_env(tmp_path)
    cfg = tmp_path / "rclone.conf"
    cfg.write_text("")
    env["RCLONE_CONFIG"] = str(cfg)
    return env


def rclone_remote(s3_url):
    """An on-the-fly rclone remote (`:s3,...:`) for the S3 endpoint, path style."""
    return (
        f":s3,provider=Other,access_key_id={ACCESS_KEY},secret_access_key={SECRET_KEY},"
        f"endpoint='{s3_url}',force_path_style=true:"
    )


def test_rclone_tree_roundtrip(node, tree, tmp_path, bucket_name):
    rclone = need("rclone")
    env = rclone_env(tmp_path)
    remote = rclone_remote(node.s3_url)
    flags = RCLONE_FLAGS
    b = bucket_name("rclone")

    def rc(*args, check=True):
        return run(node, [rclone, *args, *flags], env, check=check)

    rc("mkdir", remote + b)
    assert b in rc("lsd", remote).stdout
    rc("copy", tree, remote + f"{b}/tree")

    listed = sorted(rc("lsf", "-R", "--files-only", remote + f"{b}/tree").stdout.splitlines())
    assert listed == sorted(TREE_FILES)
    sizes = dict(line.split(None, 1)[::-1] for line in rc("ls", remote + f"{b}/tree").stdout.splitlines())
    assert {k: int(v) for k, v in sizes.items()} == TREE_FILES

    # rclone compares sizes and MD5s (ETag, or its own metadata for multipart objects).
    check = rc("check", tree, remote + f"{b}/tree")
    assert "0 differences found" in check.stderr, check.stderr

    back = tmp_path / "back"
    rc("copy", remote + f"{b}/tree", back)
    assert tree_digests(back) == tree_digests(tree)

    rc("delete", remote + f"{b}/tree")
    assert rc("lsf", "-R", remote + b).stdout.strip() == ""
    rc("rmdir", remote + b)
    assert b not in rc("lsd", remote).stdout


def s3cmd_config(node, path, extra=""):
    """A minimal .s3cfg for the endpoint: path style (host_bucket without %(bucket)s),
    plain http, Signature Version 4."""
    host = node.s3_url.removeprefix("http://")
    path.write_text(
        "[default]\n"
        f"access_key = {ACCESS_KEY}\n"
        f"secret_key = {SECRET_KEY}\n"
        f"host_base = {host}\n"
        f"host_bucket = {host}\n"
        "use_https = False\n"
        "signature_v2 = False\n"
        "progress_meter = False\n" + extra
    )
    return path


def test_s3cmd_tree_roundtrip(node, tree, tmp_path, bucket_name):
    s3cmd = need("s3cmd")
    # An AWS region name: s3cmd's default bucket_location "US" is refused as a signing
    # region (test_s3cmd_default_region_us).
    cfg = s3cmd_config(node, tmp_path / "s3cfg", f"bucket_location = {REGION}\nmultipart_chunk_size_mb = 5\n")
    env = base_env(tmp_path)
    b = bucket_name("s3cmd")

    def s3c(*args, check=True):
        return run(node, [s3cmd, "-c", str(cfg), *map(str, args)], env, check=check)

    s3c("mb", f"s3://{b}")
    assert f"s3://{b}" in s3c("ls").stdout
    s3c("sync", f"{tree}/", f"s3://{b}/tree/")

    listed = s3c("ls", "-r", f"s3://{b}/tree/").stdout.splitlines()
    got = {}
    for line in listed:
        date, time_, size, url = line.split(None, 3)
        got[url.removeprefix(f"s3://{b}/tree/")] = int(size)
    assert got == TREE_FILES
    top = s3c("ls", f"s3://{b}/tree/").stdout
    assert "DIR" in top and f"s3://{b}/tree/a/" in top

    info = s3c("info", f"s3://{b}/tree/top.txt").stdout
    assert "File size: 1000" in info, info

    back = tmp_path / "back"
    back.mkdir()
    s3c("sync", f"s3://{b}/tree/", f"{back}/")
    assert tree_digests(back) == tree_digests(tree)
    single = tmp_path / "single.bin"
    s3c("get", f"s3://{b}/tree/big/multipart.bin", single)
    assert file_sha256(single) == file_sha256(tree / "big/multipart.bin")

    s3c("del", "--recursive", "--force", f"s3://{b}/")
    assert s3c("ls", "-r", f"s3://{b}").stdout.strip() == ""
    s3c("rb", f"s3://{b}")
    assert f"s3://{b}" not in s3c("ls").stdout


def test_s3cmd_default_region_us(node, tmp_path, bucket_name):
    """s3cmd's default bucket_location 'US' is not a region name: the server answers
    AuthorizationHeaderMalformed naming us-east-1, as AWS does, and s3cmd retries there."""
    s3cmd = need("s3cmd")
    cfg = s3cmd_config(node, tmp_path / "s3cfg")  # no bucket_location: s3cmd's default, US
    env = base_env(tmp_path)
    b = bucket_name("s3cmd-us")
    src = write_random(tmp_path / "f.bin", 10_000)

    def s3c(*args):
        return run(node, [s3cmd, "-c", str(cfg), *map(str, args)], env)

    s3c("mb", f"s3://{b}")
    s3c("put", src, f"s3://{b}/f.bin")
    s3c("get", f"s3://{b}/f.bin", tmp_path / "f.down")
    assert file_sha256(tmp_path / "f.down") == file_sha256(src)
    s3c("del", f"s3://{b}/f.bin")
    s3c("rb", f"s3://{b}")
