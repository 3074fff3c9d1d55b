"""Real S3 clients against a real cluster: 5 `bucketdb server` processes on loopback at
replication factor 3, so each node holds only about 3/5 of the keys and no node holds
them all. Every listing (ListObjects v1 and v2, ListObjectVersions, ListMultipartUploads)
through any node must merge what every member holds, and DeleteBucket must see keys held
elsewhere: what boto3 users and the sync tools (`aws s3 sync`, `rclone sync`), which
decide what to upload and delete from a listing, depend on.

The cluster comes from conftest.Cluster (free loopback ports, temp dirs, the first node
bootstrapping and the others joining it); the client helpers and test keys from
test_s3_clients.py. Nothing sleeps to synchronise: waits poll with a deadline.

    BUCKETDB_BIN=$PWD/target/debug/bucketdb .venv/bin/pytest -q tests/python/test_cluster_clients.py
"""

import json
import os
import random
import re
import time

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import poll, running_cluster
from test_s3_clients import (
    ACCESS_KEY,
    AWS,
    MiB,
    RCLONE_FLAGS,
    SECRET_KEY,
    aws_env,
    boto3_client,
    clean_client_env,  # noqa: F401 (an autouse fixture: no AWS_* settings of the machine leak in)
    error_code,
    need,
    rclone_env,
    rclone_remote,
    run,
    tree_digests,
    write_random,
)

NODES = 5
RF = 3
# Small pages, so every listing is merged across many continuation tokens / markers.
SMALL_PAGE = 7
# No retries: a refused or failed request shows as it is instead of being retried away.
NO_RETRIES = Config(retries={"total_max_attempts": 1})


# ---------------------------------------------------------------------------------------
# Fixtures and helpers.


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A 5-node cluster in the default (asynchronous replication) mode, shared by the
    tests of the sync tools (each works in its own bucket)."""
    with running_cluster(tmp_path_factory.mktemp("cluster"), ACCESS_KEY, SECRET_KEY, size=NODES) as c:
        yield c


@pytest.fixture
def quorum_cluster(tmp_path):
    """A 5-node cluster whose writes wait for a quorum of replicas."""
    with running_cluster(
        tmp_path / "cluster", ACCESS_KEY, SECRET_KEY, size=NODES, extra_args=["--quorum-required", "true"]
    ) as c:
        yield c


@pytest.fixture(autouse=True)
def cluster_logs_on_failure(request):
    """On a failed test, prints what each node of its cluster logged during it (one line
    per request with its status), so the failing request can be found."""
    clusters = [request.getfixturevalue(name) for name in ("cluster", "quorum_cluster") if name in request.fixturenames]
    marks = [c.log_marks() for c in clusters]
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for c, m in zip(clusters, marks):
            print(f"---- bucketdb logs during {request.node.name} ----")
            print(c.logs_since(m))


def node_clients(cluster):
    """A boto3 client (default settings, no retries) per node, in node order."""
    return [boto3_client(n.s3_url, config=NO_RETRIES) for n in cluster.nodes]


def list_v2(s3, bucket, page_size=SMALL_PAGE, **kw):
    """(keys, common prefixes, {key: size}) of a ListObjectsV2 listing through the
    paginator in pages of `page_size`; checks every page's size and KeyCount."""
    keys, prefixes, sizes = [], [], {}
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": page_size}, **kw
    )
    for p in pages:
        contents, common = p.get("Contents", []), p.get("CommonPrefixes", [])
        assert len(contents) + len(common) <= page_size, f"a page larger than MaxKeys={page_size}"
        assert p["KeyCount"] == len(contents) + len(common), p
        keys += [o["Key"] for o in contents]
        prefixes += [c["Prefix"] for c in common]
        sizes.update((o["Key"], o["Size"]) for o in contents)
    return keys, prefixes, sizes


def list_v1(s3, bucket, page_size=SMALL_PAGE):
    """The keys of a ListObjects (v1) listing through its paginator (NextMarker)."""
    pages = s3.get_paginator("list_objects").paginate(Bucket=bucket, PaginationConfig={"PageSize": page_size})
    return [o["Key"] for p in pages for o in p.get("Contents", [])]


def list_versions(s3, bucket, page_size=SMALL_PAGE):
    """[(key, version id, is latest, is delete marker)] of a ListObjectVersions listing
    through its paginator (key and version-id markers)."""
    out = []
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, PaginationConfig={"PageSize": page_size})
    for p in pages:
        versions, markers = p.get("Versions", []), p.get("DeleteMarkers", [])
        assert len(versions) + len(markers) <= page_size, f"a page larger than MaxKeys={page_size}"
        out += [(v["Key"], v["VersionId"], v["IsLatest"], False) for v in versions]
        out += [(m["Key"], m["VersionId"], m["IsLatest"], True) for m in markers]
    return out


def list_uploads(s3, bucket, page_size=4):
    """{(key, upload id)} of a ListMultipartUploads listing through its paginator."""
    pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, PaginationConfig={"PageSize": page_size})
    listed = []
    for p in pages:
        assert len(p.get("Uploads", [])) <= page_size, f"a page larger than MaxUploads={page_size}"
        listed += [(u["Key"], u["UploadId"]) for u in p.get("Uploads", [])]
    assert len(listed) == len(set(listed)), f"an upload listed twice: {listed}"
    return set(listed)


def delete_keys(s3, bucket, keys):
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert not out.get("Errors"), out.get("Errors")
    assert sorted(d["Key"] for d in out.get("Deleted", [])) == sorted(keys)


def assert_listings(clients, bucket, want, what):
    """Every listing form through every node shows exactly the keys `want` (bodies of
    their own key's length): ListObjectsV2 and v1 in small pages, and with '/' as the
    delimiter exactly the top-level keys and folders."""
    want = sorted(want)
    folders = sorted({k.split("/", 1)[0] + "/" for k in want if "/" in k})
    top = [k for k in want if "/" not in k]
    for i, s3 in enumerate(clients, 1):
        keys, prefixes, sizes = list_v2(s3, bucket)
        assert keys == want, f"{what}: ListObjectsV2 (pages of {SMALL_PAGE}) through n{i}: {diff(keys, want)}"
        assert not prefixes
        assert sizes == {k: len(k.encode()) for k in want}, f"{what}: sizes through n{i}"
        keys, prefixes, _ = list_v2(s3, bucket, page_size=2, Delimiter="/")
        assert prefixes == folders, f"{what}: CommonPrefixes through n{i}"
        assert keys == top, f"{what}: top-level keys through n{i}"
        keys = list_v1(s3, bucket)
        assert keys == want, f"{what}: ListObjects (v1) through n{i}: {diff(keys, want)}"


def diff(got, want):
    """What a listing got wrong, briefly."""
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    dups = sorted({k for k in got if got.count(k) > 1})
    order = "" if got == sorted(got) else " (out of order)"
    return f"{len(got)} keys listed, {len(want)} expected; missing {missing}, unexpected {extra}, repeated {dups}{order}"


# ---------------------------------------------------------------------------------------
# boto3.

FOLDERS = ["alpha", "beta", "delta", "gamma"]


def flat_keys():
    """~150 keys in four folders (some nested a level deeper), a few at the top, and a
    few that need URL encoding."""
    keys = [f"{FOLDERS[i % 4]}/{'sub/' if i % 5 == 0 else ''}k{i:03d}" for i in range(146)]
    keys += ["top-1", "top-2", "beta/space and+plus&eq=.txt", "gamma/ünïcødé-文件"]
    return keys


def test_boto3_listings_and_delete_bucket_through_every_node(quorum_cluster):
    cluster = quorum_cluster
    s3 = node_clients(cluster)
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    b = "flat"
    s3[0].create_bucket(Bucket=b)

    # Written through random nodes (the body of each is its key).
    keys = flat_keys()
    for k in keys:
        s3[rng.randrange(NODES)].put_object(Bucket=b, Key=k, Body=k.encode())

    # No node holds every key: each listing below merges what the members hold.
    counts = poll(
        f"{RF} copies of each of {len(keys)} objects",
        lambda: cluster.held_counts(len(keys), RF),
        details=lambda: str([cluster.own_status(n) for n in cluster.nodes]),
    )
    assert all(0 < c < len(keys) for c in counts), f"objects held per node: {counts} of {len(keys)}"

    assert_listings(s3, b, keys, f"after {len(keys)} uploads (seed {seed})")
    with pytest.raises(ClientError) as e:
        s3[3].delete_bucket(Bucket=b)
    assert error_code(e) == ("BucketNotEmpty", 409)

    # Unfinished multipart uploads live on their keys' coordinators; every node lists all.
    uploads = set()
    for i in range(6):
        key = f"uploads/u{i}"
        out = s3[rng.randrange(NODES)].create_multipart_upload(Bucket=b, Key=key)
        uploads.add((key, out["UploadId"]))
    for i, c in enumerate(s3, 1):
        assert list_uploads(c, b) == uploads, f"ListMultipartUploads through n{i} (seed {seed})"
    for key, upload_id in uploads:
        s3[rng.randrange(NODES)].abort_multipart_upload(Bucket=b, Key=key, UploadId=upload_id)
    for i, c in enumerate(s3, 1):
        assert list_uploads(c, b) == set(), f"ListMultipartUploads after the aborts through n{i}"

    # A third deleted through one node: listed at once through another, then every node.
    gone = keys[::3]
    rest = [k for k in keys if k not in gone]
    delete_keys(s3[2], b, gone)
    listed, _, _ = list_v2(s3[3], b)
    assert listed == sorted(rest), f"listed through n4 right after a delete through n3: {diff(listed, sorted(rest))}"
    assert_listings(s3, b, rest, f"after deleting {len(gone)} keys (seed {seed})")

    # DeleteBucket through any node sees the keys the other nodes hold...
    for i, c in enumerate(s3, 1):
        with pytest.raises(ClientError) as e:
            c.delete_bucket(Bucket=b)
        assert error_code(e) == ("BucketNotEmpty", 409), f"DeleteBucket through n{i}"
    # ... even through a node holding none of them: one key left, on RF of the nodes.
    last = rest.pop()
    delete_keys(s3[4], b, rest)
    counts = poll(
        "the deletes on every replica",
        lambda: cluster.held_counts(1, RF),
        details=lambda: str([cluster.own_status(n) for n in cluster.nodes]),
    )
    without = [i for i, count in enumerate(counts) if count == 0]
    assert len(without) == NODES - RF, f"objects held per node: {counts}"
    for i in without:
        listed, _, _ = list_v2(s3[i], b)
        assert listed == [last], f"through n{i + 1}, which holds no key of the bucket"
        with pytest.raises(ClientError) as e:
            s3[i].delete_bucket(Bucket=b)
        assert error_code(e) == ("BucketNotEmpty", 409), f"DeleteBucket through n{i + 1}, which holds no key"
    delete_keys(s3[without[0]], b, [last])
    for i, c in enumerate(s3, 1):
        listed, prefixes, _ = list_v2(c, b)
        assert listed == [] and prefixes == [], f"the emptied bucket through n{i}: {listed}"
    s3[1].delete_bucket(Bucket=b)
    for i, c in enumerate(s3, 1):
        with pytest.raises(ClientError) as e:
            c.head_bucket(Bucket=b)
        assert error_code(e)[1] == 404, f"HeadBucket of the deleted bucket through n{i}"
        assert b not in [x["Name"] for x in c.list_buckets()["Buckets"]]


def test_boto3_list_object_versions_through_every_node(quorum_cluster):
    cluster = quorum_cluster
    s3 = node_clients(cluster)
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    b = "versioned"
    s3[1].create_bucket(Bucket=b)
    s3[2].put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    for i, c in enumerate(s3, 1):
        assert c.get_bucket_versioning(Bucket=b).get("Status") == "Enabled", f"versioning through n{i}"

    # Two versions of each key and a delete marker on some, through random nodes.
    keys = [f"{FOLDERS[i % 4]}/v{i:02d}" for i in range(30)]
    want = {}  # (key, version id) -> is delete marker
    latest = {}
    for round_ in range(2):
        for k in keys:
            vid = s3[rng.randrange(NODES)].put_object(Bucket=b, Key=k, Body=f"{k} {round_}".encode())["VersionId"]
            want[(k, vid)] = False
            latest[k] = vid
    for k in keys[:5]:
        out = s3[rng.randrange(NODES)].delete_object(Bucket=b, Key=k)
        assert out["DeleteMarker"] is True
        want[(k, out["VersionId"])] = True
        latest[k] = out["VersionId"]

    for i, c in enumerate(s3, 1):
        listed = list_versions(c, b)
        ids = [(k, v) for k, v, _, _ in listed]
        assert len(ids) == len(set(ids)), f"a version listed twice through n{i} (seed {seed})"
        assert {(k, v): m for k, v, _, m in listed} == want, f"ListObjectVersions through n{i} (seed {seed})"
        assert {k: v for k, v, is_latest, _ in listed if is_latest} == latest, f"IsLatest through n{i}"
        current, _, _ = list_v2(c, b)
        assert current == sorted(keys[5:]), f"current objects through n{i}: {diff(current, sorted(keys[5:]))}"


# ---------------------------------------------------------------------------------------
# The sync tools: a local tree of ~60 files.

TREE_FOLDERS = ["docs", "docs/old", "img", "img/2024", "data"]
SPECIAL = ["space dir/file name.txt", "special/a+b=c&d.txt", "unicode/ünïcødé-文件.bin"]


def make_tree(root, seed, count=57, extra=()):
    """`count` small files in a few folders plus `SPECIAL` and `extra` ((name, size));
    their modification times an hour back, as for files that predate the upload (the
    sync tools compare them with the objects' LastModified)."""
    rng = random.Random(seed)
    files = {f"{TREE_FOLDERS[i % len(TREE_FOLDERS)]}/f{i:02d}.bin": rng.randrange(0, 20_000) for i in range(count)}
    files.update((name, rng.randrange(1, 5000)) for name in SPECIAL)
    files.update(extra)
    for rel, size in files.items():
        write_random(root / rel, size)
    hour_ago = time.time() - 3600
    for rel in files:
        os.utime(root / rel, (hour_ago, hour_ago))
    return files


def local_files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_awscli_sync_through_different_nodes(cluster, tmp_path):
    env = aws_env(tmp_path)
    # No retries: a refused listing fails the command instead of being retried away.
    env.update(AWS_MAX_ATTEMPTS="1", AWS_RETRY_MODE="standard", PYTHONIOENCODING="utf-8")
    n = cluster.nodes

    def aws(node, *args, check=True):
        return run(cluster, [AWS, "--endpoint-url", node.s3_url, *map(str, args)], env, check=check)

    src = tmp_path / "src"
    # One file above the awscli's 8 MiB multipart threshold.
    files = make_tree(src, seed=2, extra=[("big/multipart.bin", 9 * MiB + 5)])
    b = "cli-sync"
    aws(n[0], "s3", "mb", f"s3://{b}")
    patterns = {
        "upload": re.compile(rf"^upload: .+ to s3://{re.escape(b)}/(.+)$"),
        "download": re.compile(rf"^download: s3://{re.escape(b)}/(.+) to .+$"),
        "delete": re.compile(rf"^delete: s3://{re.escape(b)}/(.+)$"),
    }

    def actions(out):
        """{action: sorted keys} of what a command's output says it did (the progress
        lines end in a carriage return, the action lines are padded with blanks)."""
        lines = [line.strip() for line in re.split(r"[\r\n]", out)]
        done = {what: sorted(m.group(1) for line in lines if (m := p.match(line))) for what, p in patterns.items()}
        return {what: keys for what, keys in done.items() if keys}

    # Through node A: everything uploaded.
    out = aws(n[0], "s3", "sync", src, f"s3://{b}").stdout
    assert actions(out) == {"upload": sorted(files)}, out

    # Through node B, which lists the bucket (in pages of 7) to decide: nothing to do.
    out = aws(n[1], "s3", "sync", "--page-size", SMALL_PAGE, src, f"s3://{b}").stdout
    assert out.strip() == "", f"a second sync through another node transferred something:\n{out}"

    # Some local files removed: `sync --delete` through node C deletes exactly those.
    removed = sorted(files)[::5]
    for rel in removed:
        (src / rel).unlink()
    out = aws(n[2], "s3", "sync", "--delete", src, f"s3://{b}").stdout
    assert actions(out) == {"delete": removed}, out

    # Node D lists exactly the remaining files, with their sizes.
    remaining = {rel: size for rel, size in files.items() if rel not in removed}
    listed = {}
    for line in aws(n[3], "s3", "ls", "--recursive", f"s3://{b}").stdout.splitlines():
        _date, _time, size, key = line.split(None, 3)
        assert key not in listed, f"{key} listed twice"
        listed[key] = int(size)
    assert listed == remaining

    # A download sync through node E brings back exactly the local tree; then one
    # through node A has nothing to do.
    back = tmp_path / "back"
    out = aws(n[4], "s3", "sync", f"s3://{b}", back).stdout
    assert actions(out) == {"download": sorted(remaining)}, out
    assert tree_digests(back) == tree_digests(src)
    out = aws(n[0], "s3", "sync", "--delete", f"s3://{b}", back).stdout
    assert out.strip() == "", f"a second download sync through another node did something:\n{out}"

    # `rb` through a node refuses the bucket while other nodes hold its keys; `rm
    # --recursive` through another node empties it, and then `rb` works.
    p = aws(n[1], "s3", "rb", f"s3://{b}", check=False)
    assert p.returncode != 0 and "BucketNotEmpty" in p.stderr, p.stdout + p.stderr
    out = aws(n[2], "s3", "rm", "--recursive", f"s3://{b}").stdout
    assert actions(out) == {"delete": sorted(remaining)}, out
    aws(n[3], "s3", "rb", f"s3://{b}")
    assert f" {b}\n" not in aws(n[4], "s3", "ls").stdout


def test_rclone_sync_through_different_nodes(cluster, tmp_path):
    rclone = need("rclone")
    env = rclone_env(tmp_path)
    n = cluster.nodes

    def rc(*args):
        return run(cluster, [rclone, *map(str, args), *RCLONE_FLAGS], env)

    def at(node, path):
        """`path` (bucket/key) through `node`'s S3 API."""
        return rclone_remote(node.s3_url) + path

    def transfers(p):
        """{object: message} of the copies and deletions an rclone run logged (-v)."""
        done = {}
        for line in p.stderr.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            msg = entry.get("msg", "")
            if msg.startswith("Copied") or msg == "Deleted":
                assert entry["object"] not in done, f"{entry['object']} logged twice: {p.stderr}"
                done[entry["object"]] = msg
        return done

    src = tmp_path / "src"
    # One file above the 5 MiB multipart threshold of RCLONE_FLAGS.
    files = make_tree(src, seed=3, extra=[("big/multipart.bin", 6 * MiB + 3)])
    b = "rclone-sync"
    rc("mkdir", at(n[1], b))
    log = ["-v", "--use-json-log"]

    # Through node A: everything copied.
    p = rc("sync", src, at(n[2], b), *log)
    assert transfers(p) == {rel: "Copied (new)" for rel in files}, p.stderr

    # Through node B: no differences, and a second sync through node C has nothing to do.
    p = rc("check", src, at(n[3], b))
    assert "0 differences found" in p.stderr and f"{len(files)} matching files" in p.stderr, p.stderr
    p = rc("sync", src, at(n[4], b), *log)
    assert transfers(p) == {}, p.stderr

    # Local changes: two files changed (new sizes), two added, three removed.
    ordered = sorted(files)
    changed, removed = ordered[1:3], ordered[10:13]
    added = ["new/one.txt", "docs/new-two.bin"]
    for rel in changed:
        write_random(src / rel, files[rel] + 100)
    for rel in added:
        write_random(src / rel, 1234)
    for rel in removed:
        (src / rel).unlink()
    p = rc("sync", src, at(n[0], b), *log)
    want = {rel: "Copied (replaced existing)" for rel in changed}
    want.update((rel, "Copied (new)") for rel in added)
    want.update((rel, "Deleted") for rel in removed)
    assert transfers(p) == want, p.stderr

    # Nodes D and E list exactly the local files, with the same contents.
    listed = rc("lsf", "-R", "--files-only", at(n[1], b)).stdout.splitlines()
    assert sorted(listed) == local_files(src)
    p = rc("check", src, at(n[2], b))
    assert "0 differences found" in p.stderr, p.stderr
