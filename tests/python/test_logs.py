"""The request log with `--log-format json`: one JSON object per request carrying the
trace id the client saw (`x-request-id` / `x-amz-request-id`), the operation, bucket,
status, bytes and duration, for REST and S3 alike; and no secret ever appears in it."""

import json
import os

import boto3
import requests
from botocore.config import Config

from conftest import running_node

ACCESS_KEY = "LogsTestAccessKey01"
SECRET_KEY = "LogsTestSecretKey0123456789abcdefghij"


def request_lines(node):
    """The JSON request lines written so far (the log is flushed when the node stops)."""
    out = []
    for line in node.log().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("target") == "bucketdb::request" or "trace_id" in entry:
            out.append(entry)
    return out


def test_json_request_log_lines_name_operation_bucket_and_trace_id(tmp_path):
    with running_node(tmp_path, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                      extra_args=("--log-format", "json")) as node:
        auth = (ACCESS_KEY, SECRET_KEY)
        body = os.urandom(5000)
        rest = requests.post(f"{node.base_url}/objects/logged/dir/a.bin", data=body, auth=auth, timeout=30)
        assert rest.status_code == 201
        rest_id = rest.headers["x-request-id"]
        missing = requests.get(f"{node.base_url}/objects/logged/absent", auth=auth, timeout=30)
        assert missing.status_code == 404
        s3 = boto3.client(
            "s3",
            endpoint_url=node.s3_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}),
        )
        put = s3.put_object(Bucket="logged", Key="b.bin", Body=body)
        s3_id = put["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
        # A token request carries the secret in its body: it must not reach the log.
        token = requests.post(f"{node.base_url}/auth/token",
                              json={"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}, timeout=30)
        assert token.status_code == 200
    log = node.log()
    assert SECRET_KEY not in log, "the secret key was logged"
    lines = request_lines(node)
    by_id = {e.get("trace_id"): e for e in lines}

    r = by_id.get(rest_id)
    assert r is not None, f"no log line for trace id {rest_id}: {lines}"
    assert (r["api"], r["operation"], r["bucket"], r["status"]) == ("rest", "PutObject", "logged", 201)
    assert r["method"] == "POST" and r["path"] == "/objects/logged/dir/a.bin"
    assert r["bytes_in"] == len(body)
    assert r["duration_ms"] >= 0

    s = by_id.get(s3_id)
    assert s is not None, f"no log line for trace id {s3_id}: {lines}"
    assert (s["api"], s["operation"], s["bucket"], s["status"]) == ("s3", "PutObject", "logged", 200)
    assert s["bytes_in"] >= len(body)

    statuses = {(e["operation"], e["status"]) for e in lines}
    assert ("GetObject", 404) in statuses, statuses
