"""`/metrics` read by the Prometheus project's own text-format parser: the exposition must
parse as a whole, every family must have the type Prometheus expects, and the counters
must move with traffic sent through the REST and S3 APIs."""

import hashlib
import os

import boto3
import requests
from botocore.config import Config
from prometheus_client.parser import text_string_to_metric_families

from conftest import running_node

ACCESS_KEY = "MetricsTestAccessKey"
SECRET_KEY = "MetricsTestSecretKey0123456789abcdef"


def scrape(node):
    """Every sample of the exposition, by family, from the reference parser (which
    raises on anything that is not valid Prometheus text)."""
    resp = requests.get(f"{node.base_url}/metrics", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(resp.text)}


def total(families, name, **labels):
    family = families.get(name)
    if family is None:
        return 0.0
    return sum(
        s.value
        for s in family.samples
        if s.name in (name, f"{name}_total") and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_parse_and_move_with_traffic(tmp_path):
    with running_node(tmp_path, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as node:
        before = scrape(node)
        expected_types = {
            "bucketdb_requests": "counter",
            "bucketdb_request_duration_seconds": "histogram",
            "bucketdb_bytes_in": "counter",
            "bucketdb_bytes_out": "counter",
            "bucketdb_objects": "gauge",
            "bucketdb_stored_bytes": "gauge",
            "bucketdb_chunk_verify_failures": "counter",
            "bucketdb_gc_runs": "counter",
            "bucketdb_lifecycle_runs": "counter",
            "bucketdb_disk_free_bytes": "gauge",
        }

        auth = (ACCESS_KEY, SECRET_KEY)
        body = os.urandom(200_000)
        r = requests.post(f"{node.base_url}/objects/metered/rest.bin", data=body, auth=auth, timeout=30)
        assert r.status_code == 201, r.text
        got = requests.get(f"{node.base_url}/objects/metered/rest.bin", auth=auth, timeout=30)
        assert hashlib.sha256(got.content).digest() == hashlib.sha256(body).digest()
        s3 = boto3.client(
            "s3",
            endpoint_url=node.s3_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}),
        )
        s3.put_object(Bucket="metered", Key="s3.bin", Body=body)
        missing = requests.get(f"{node.base_url}/objects/metered/absent", auth=auth, timeout=30)
        assert missing.status_code == 404

        after = scrape(node)
        for name, kind in expected_types.items():
            assert name in after, f"{name} missing from /metrics: {sorted(after)}"
            assert after[name].type == kind, f"{name} is a {after[name].type}, not a {kind}"
        assert total(after, "bucketdb_requests", operation="PutObject") - total(
            before, "bucketdb_requests", operation="PutObject"
        ) == 2
        assert total(after, "bucketdb_requests", status="404") >= 1
        assert total(after, "bucketdb_bytes_in") - total(before, "bucketdb_bytes_in") >= 2 * len(body)
        assert total(after, "bucketdb_bytes_out") - total(before, "bucketdb_bytes_out") >= len(body)
        assert total(after, "bucketdb_objects") == 2
        assert total(after, "bucketdb_stored_bytes") == 2 * len(body)
        histogram = after["bucketdb_request_duration_seconds"]
        counts = [s.value for s in histogram.samples if s.name.endswith("_count")]
        assert sum(counts) >= 4
