"""Shared helpers for the Python client tests: the real `bucketdb server` process.

The binary comes from env BUCKETDB_BIN (default <repo>/target/debug/bucketdb). Each node
runs on fresh temp dirs with free loopback ports (127.0.0.1:0 for both the REST API and
the S3 API); the addresses are read from what the server prints on stdout.
"""

import concurrent.futures
import contextlib
import os
import pathlib
import queue
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest
import requests

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("BUCKETDB_BIN") or str(REPO_ROOT / "target" / "debug" / "bucketdb")

START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
LISTENING = re.compile(r"^BucketDB node (\S+) listening on (http://\S+) ")
S3_LISTENING = re.compile(r"^S3 API listening on (http://\S+)$")
ACCESS_LINE = re.compile(r"^\s+access key: (\S+)$")
SECRET_LINE = re.compile(r"^\s+secret key: (\S+)$")


class Node:
    """A `bucketdb server` process on `tmp_path/data` and `tmp_path/meta`.

    `base_url` is the REST API, `s3_url` the S3 API. With `access_key`/`secret_key` given
    the node uses them; otherwise it generates root credentials on first start and the
    ones it prints are picked up (None on a restart, where nothing is printed). `env` adds
    environment variables (the caller's BUCKETDB_* settings are never passed on).
    """

    def __init__(
        self, tmp_path, generation, access_key=None, secret_key=None, extra_args=(), log_filter=None, env=None
    ):
        self.data = tmp_path / "data"
        self.meta = tmp_path / "meta"
        self.log_path = tmp_path / f"node-{generation}.log"
        self.access_key = None
        self.secret_key = None
        self.base_url = None
        self.s3_url = None
        self.node_id = None
        self.stdout_lines = []
        proc_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("BUCKETDB_") or k == "BUCKETDB_LOG"
        }
        if log_filter is not None:
            proc_env["BUCKETDB_LOG"] = log_filter
        proc_env.update(env or {})
        if not os.access(BIN, os.X_OK):
            pytest.fail(f"bucketdb binary not found at {BIN} (run `cargo build` or set BUCKETDB_BIN)")
        args = [
            BIN,
            "server",
            "--storage-path", str(self.data),
            "--metadata-path", str(self.meta),
            "--http-addr", "127.0.0.1:0",
            "--s3-addr", "127.0.0.1:0",
        ]
        if access_key is not None:
            args += ["--access-key", access_key, "--secret-key", secret_key]
            self.access_key, self.secret_key = access_key, secret_key
        args += list(extra_args)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=proc_env,
            text=True,
        )
        self._lines = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()
        try:
            self._wait_listening()
        except BaseException:
            self.kill()
            raise

    def _drain(self):
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _wait_listening(self):
        """Reads stdout up to the S3 line (printed after the REST API's line)."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"bucketdb did not report its addresses in {START_TIMEOUT}s; log:\n{self.log()}")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"bucketdb exited before listening; log:\n{self.log()}")
            self.stdout_lines.append(line)
            if m := ACCESS_LINE.match(line):
                self.access_key = m.group(1)
            elif m := SECRET_LINE.match(line):
                self.secret_key = m.group(1)
            elif m := LISTENING.match(line):
                self.node_id = m.group(1)
                self.base_url = m.group(2)
            elif m := S3_LISTENING.match(line):
                self.s3_url = m.group(1)
                if self.base_url is None:
                    pytest.fail(f"S3 address printed before the REST API's: {self.stdout_lines}")
                return

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines=60):
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self):
        """SIGTERM; returns the exit code (graceful shutdown should give 0)."""
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            sockets = self._open_sockets()
            self.kill()
            pytest.fail(
                f"bucketdb did not exit {STOP_TIMEOUT}s after SIGTERM; its TCP sockets then:\n"
                f"{sockets}\nlog (tail):\n{self.log_tail(200)}"
            )
        finally:
            self._log.close()

    def _open_sockets(self):
        """The server's TCP sockets (`ss`), to tell which connection kept it from stopping."""
        ss = shutil.which("ss")
        if ss is None:
            return "(ss not installed)"
        try:
            out = subprocess.run([ss, "-tanpi"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError) as e:
            return f"(ss failed: {e})"
        mine = f"pid={self.proc.pid},"
        lines = out.splitlines()
        return "\n".join(l for i, l in enumerate(lines) if mine in l or (i and mine in lines[i - 1]))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@contextlib.contextmanager
def running_node(path, **kwargs):
    """A `Node` on `path` for the length of a `with` block; it must then stop cleanly
    (exit 0 after SIGTERM). Keyword arguments go to `Node`."""
    n = Node(path, 1, **kwargs)
    try:
        yield n
    finally:
        if n.proc.poll() is None:
            rc = n.stop()
            assert rc == 0, f"bucketdb exited with {rc} after SIGTERM; log:\n{n.log_tail()}"


# ---------------------------------------------------------------------------------------
# A cluster of nodes on loopback.

CLUSTER_DEADLINE = 60.0  # longest wait for a cluster to form
POLL_INTERVAL = 0.1


def poll(what, f, deadline=CLUSTER_DEADLINE, details=lambda: ""):
    """Calls `f` until it returns something other than None and returns that; fails
    after `deadline` seconds with `what`, the last value's repr and `details()`."""
    end = time.monotonic() + deadline
    while True:
        got = f()
        if got is not None:
            return got
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline}s waiting for {what}\n{details()}")
        time.sleep(POLL_INTERVAL)


class Cluster:
    """`size` `bucketdb server` processes forming one cluster on loopback.

    The first node starts with `--bootstrap`, the others (all at once) `--join` its REST
    URL. Every node listens on free ports (127.0.0.1:0; a node advertises the port it
    really got), has the same root keys, the same cluster secret (env
    BUCKETDB_CLUSTER_SECRET) and short liveness timings, plus `extra_args`. Each node
    lives in `tmp_path/n<i>` (its log: `node-1.log` there). The constructor returns once
    every node is ready and reports the same ring of `size` members, all active and
    alive; on failure every node started is killed. `log_filter` is the nodes'
    BUCKETDB_LOG.
    """

    HEARTBEAT = "200ms"
    NODE_DOWN_TIMEOUT = "2s"

    def __init__(self, tmp_path, access_key, secret_key, size=5, extra_args=(), log_filter=None):
        self.access_key, self.secret_key = access_key, secret_key
        self.secret = "python-tests-cluster-secret-" + secrets.token_hex(16)
        self.nodes = []
        self._args = [
            "--heartbeat-interval", self.HEARTBEAT,
            "--node-down-timeout", self.NODE_DOWN_TIMEOUT,
            *extra_args,
        ]
        self._tmp_path = tmp_path
        # One line per request; raft's own chatter only from warnings up (BUCKETDB_LOG
        # overrides both).
        self._log_filter = log_filter or os.environ.get("BUCKETDB_LOG") or "info,openraft=warn"
        try:
            first = self._start(1, ["--bootstrap"])
            self.nodes.append(first)
            poll("the first node ready", lambda: True if self.ready(first) else None, details=self.log_tail)
            with concurrent.futures.ThreadPoolExecutor(max(1, size - 1)) as pool:
                joining = [pool.submit(self._start, i, ["--join", first.base_url]) for i in range(2, size + 1)]
                concurrent.futures.wait(joining)
            # Every started node is kept (to be killed) before any start failure is raised.
            self.nodes += [f.result() for f in joining if f.exception() is None]
            for f in joining:
                f.result()
            self.wait_formed()
        except BaseException:
            self.kill()
            raise

    def _start(self, i, args):
        path = self._tmp_path / f"n{i}"
        path.mkdir(parents=True, exist_ok=True)
        return Node(
            path,
            1,
            access_key=self.access_key,
            secret_key=self.secret_key,
            extra_args=[*self._args, *args],
            log_filter=self._log_filter,
            env={"BUCKETDB_CLUSTER_SECRET": self.secret},
        )

    def get(self, node, path, timeout=10):
        """`GET path` on a node's REST API with the root keys (Basic auth)."""
        return requests.get(node.base_url + path, auth=(self.access_key, self.secret_key), timeout=timeout)

    def ready(self, node):
        try:
            return requests.get(node.base_url + "/health/ready", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def status(self, node):
        """GET /cluster through `node` (the JSON), or None without a good answer."""
        try:
            r = self.get(node, "/cluster")
        except requests.RequestException:
            return None
        return r.json() if r.status_code == 200 else None

    def own_status(self, node):
        """`node`'s own entry in its GET /cluster (its own figures, not a peer's last
        heartbeat), or None."""
        s = self.status(node)
        if s is None:
            return None
        address = node.base_url.removeprefix("http://")
        return next((m for m in s["nodes"] if m["address"] == address), None)

    def held_counts(self, total, copies):
        """Each node's own objectCount once the nodes hold `copies` copies of each of
        `total` objects between them (async replication may still be under way); else
        None."""
        counts = []
        for n in self.nodes:
            me = self.own_status(n)
            if me is None:
                return None
            counts.append(me["objectCount"])
        return counts if sum(counts) == copies * total else None

    def agreed_ring(self):
        """The ring version when every node is ready and reports all the nodes as
        members, active and alive, at the same ring version; else None."""
        versions = set()
        for n in self.nodes:
            s = self.status(n)
            if s is None or not self.ready(n):
                return None
            members = s["nodes"]
            if len(members) != len(self.nodes) or any(
                m["state"] != "active" or m["liveness"] != "alive" for m in members
            ):
                return None
            versions.add(s["ringVersion"])
        return versions.pop() if len(versions) == 1 else None

    def wait_formed(self):
        def details():
            return "\n".join(f"{n.base_url}: {self.status(n)}" for n in self.nodes) + "\n" + self.log_tail()

        return poll(f"{len(self.nodes)} active members on every node", self.agreed_ring, details=details)

    def log_marks(self):
        """Each node's log size now, for `logs_since`."""
        return [n.log_path.stat().st_size if n.log_path.exists() else 0 for n in self.nodes]

    def logs_since(self, marks, limit=20000):
        """What each node logged since `marks` (at most `limit` characters each)."""
        out = []
        for i, n in enumerate(self.nodes):
            start = marks[i] if i < len(marks) else 0
            try:
                with open(n.log_path, "rb") as f:
                    f.seek(start)
                    text = f.read().decode(errors="replace")
            except OSError:
                text = ""
            out.append(f"---- n{i + 1} ({n.base_url}, S3 {n.s3_url}) ----\n{text[-limit:]}")
        return "\n".join(out)

    def log_tail(self, lines=40):
        return "\n".join(
            f"---- n{i + 1} ({n.base_url}) ----\n{n.log_tail(lines)}" for i, n in enumerate(self.nodes)
        )

    def stop(self):
        """SIGTERM to every node at once, then waits for each; returns the exit codes
        (graceful shutdown should give 0)."""
        for n in self.nodes:
            if n.proc.poll() is None:
                n.proc.terminate()
        return [n.stop() for n in self.nodes]

    def kill(self):
        for n in self.nodes:
            n.kill()


@contextlib.contextmanager
def running_cluster(path, access_key, secret_key, **kwargs):
    """A `Cluster` on `path` for the length of a `with` block; every node must then stop
    cleanly (exit 0 after SIGTERM). Keyword arguments go to `Cluster`."""
    c = Cluster(path, access_key, secret_key, **kwargs)
    try:
        yield c
    finally:
        codes = c.stop()
        assert codes == [0] * len(codes), f"bucketdb exit codes after SIGTERM: {codes}; logs:\n{c.log_tail()}"


# ---------------------------------------------------------------------------------------
# TLS in front of the S3 API. Over plain http boto3/awscli sign the payload and send
# checksums as headers; only over https do they switch to what they send to AWS by
# default: `aws-chunked` bodies with `STREAMING-UNSIGNED-PAYLOAD-TRAILER` and the checksum
# in a trailer. This proxy terminates TLS with a throwaway self-signed certificate and
# passes the bytes through unchanged (the Host header, hence the signature, is untouched).


def make_self_signed_cert(directory):
    """(cert.pem, key.pem) for 127.0.0.1 via the openssl CLI; None if it is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class TlsProxy:
    def __init__(self, upstream_url, cert, key):
        host, port = upstream_url.removeprefix("http://").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}"
        self.ca_bundle = str(cert)
        self._closed = False
        self._live = set()  # sockets of open connections, closed by close()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            conn.settimeout(120)
            tls = self.ctx.wrap_socket(conn, server_side=True)
            up = socket.create_connection(self.upstream)
        except (OSError, ssl.SSLError):
            conn.close()
            return
        with self._lock:
            if self._closed:
                tls.close()
                up.close()
                return
            self._live.update((tls, up))
        done = threading.Event()

        def pump(src, dst):
            try:
                while True:
                    buf = src.recv(256 * 1024)
                    if not buf:
                        break
                    dst.sendall(buf)
            except (OSError, ssl.SSLError):
                pass
            finally:
                done.set()

        threading.Thread(target=pump, args=(up, tls), daemon=True).start()
        pump_thread = threading.Thread(target=pump, args=(tls, up), daemon=True)
        pump_thread.start()
        done.wait()
        with self._lock:
            self._live.difference_update((tls, up))
        for s in (tls, up):
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        """Stops accepting and closes every open connection (both sides)."""
        with self._lock:
            self._closed = True
            live, self._live = self._live, set()
        self.listener.close()
        for s in live:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the item (`item.rep_call`), so fixtures can tell in
    their teardown whether the test failed (and then print the server's log)."""
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep
