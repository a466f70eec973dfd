"""The blob store and its garbage collection (issue 11), on whichever blob store the suite runs
with (files under --data, or S3 when LATHE_TEST_S3 is set): deleting a model or a version frees
its bytes once nothing else uses them; weights another model shares, outputs a prediction
names and anything younger than the grace period stay."""
import base64
import json
import hashlib
import os
import re
import shutil

import httpx
import pytest

from conftest import ROOT, S3, Server, lathe


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def project(tmp_path, name, extra_weight=None, changed=False):
    """The streamer sample, optionally with one more weights file or changed code."""
    folder = tmp_path / name
    shutil.copytree(os.path.join(ROOT, "samples", "streamer"), folder)
    if extra_weight:
        (folder / "weights" / "extra.bin").write_bytes(extra_weight)
        spec = (folder / "lathe.yaml").read_text().replace("  - path: weights/corpus.txt", "  - path: weights/corpus.txt\n  - path: weights/extra.bin")
        (folder / "lathe.yaml").write_text(spec)
    if changed:
        with open(folder / "predict.py", "a") as source:
            source.write("\n# changed\n")
    return str(folder)


def removed_blobs(report):
    return set(re.findall(r"remove[d]? blobs/sha256/([0-9a-f]{64}) \((\d+) bytes\)", report))


def test_gc_frees_deleted_models_and_versions_and_keeps_what_is_used(tmp_path):
    server = Server("--gc-interval", "0", samples=("image",))
    try:
        env = server.env
        unique = os.urandom(3 << 20)
        lathe("push", project(tmp_path, "one", extra_weight=unique), "alice/one", "--json", env=env)
        two = json.loads(lathe("push", project(tmp_path, "two"), "alice/two", "--json", env=env).stdout)["version"]
        two_b = json.loads(lathe("push", project(tmp_path, "two-b", changed=True), "alice/two", "--json", env=env).stdout)["version"]
        # An output file a prediction names (the image sample writes a PNG).
        with open(os.path.join(ROOT, "samples", "image", "example.png"), "rb") as image:
            uri = "data:image/png;base64," + base64.b64encode(image.read()).decode()
        made = httpx.post(f"{server.url}/v1/models/alice/image/predictions", json={"input": {"image": uri, "effect": "invert"}},
                          headers={**auth(server.token), "Prefer": "wait=60"}, timeout=90).json()
        assert made["status"] == "succeeded", made
        output_url = httpx.get(f"{server.url}/v1/predictions/{made['id']}", headers=auth(server.token)).json()["output"]
        assert output_url.startswith("http")

        def gc(*args):
            return lathe("admin", "gc", "--data", server.data, *args, env=server.server_env).stdout

        # Nothing is unreferenced yet: a collection removes nothing, even with no grace period.
        assert "removed 0 objects" in gc("--grace", "0")

        assert httpx.delete(f"{server.url}/v1/models/alice/one", headers=auth(server.token)).status_code in (200, 204)
        assert httpx.delete(f"{server.url}/v1/models/alice/two/versions/{two}", headers=auth(server.token)).status_code == 204
        # Within the grace period (default one hour) the bytes of a deleted model stay: a push may be using them.
        assert "removed 0 objects" in gc()
        dry = gc("--grace", "0", "--dry-run")
        planned = removed_blobs(dry)
        assert (hashlib.sha256(unique).hexdigest(), str(len(unique))) in planned, dry
        report = gc("--grace", "0")
        assert removed_blobs(report) == planned, "the dry run named exactly what the collection removed"
        freed = sum(int(size) for _, size in planned)
        assert f"freed {freed / 1048576:.1f} MiB ({freed} bytes)" in report, report
        # The deleted model's weights, its code and config, and the deleted version's own code and config.
        assert len(planned) >= 5, report
        assert "removed 0 objects" in gc("--grace", "0"), "nothing left to collect"
        # What is still used survives: the corpus both models shared (pulled and checked by digest),
        # the live version, the output file.
        corpus = hashlib.sha256(open(os.path.join(ROOT, "samples", "streamer", "weights", "corpus.txt"), "rb").read()).hexdigest()
        assert corpus not in {digest for digest, _ in planned}
        pulled = lathe("pull", f"alice/two:{two_b}", env=env, check=False)
        assert pulled.returncode == 0, pulled.stderr
        answer = httpx.post(f"{server.url}/v1/models/alice/two/predictions", json={"input": {"max_words": 3}},
                            headers={**auth(server.token), "Prefer": "wait=60"}, timeout=90).json()
        assert answer["status"] == "succeeded", answer
        assert httpx.get(output_url).status_code == 200, "the output file a prediction names was kept"
    finally:
        server.stop()


@pytest.mark.skipif(bool(S3), reason="plants orphan files in the data folder (the files backend)")
def test_gc_removes_orphans_a_crash_left(tmp_path):
    server = Server("--gc-interval", "0", samples=())
    try:
        # A file whose row never landed and an output no prediction names (as a crash leaves them).
        orphan_file = os.path.join(server.data, "files", "a" * 26)
        orphan_output = os.path.join(server.data, "outputs", "ab" * 24, "lost.txt")
        os.makedirs(os.path.dirname(orphan_output), exist_ok=True)
        fresh = os.path.join(server.data, "files", "b" * 26)
        for path in (orphan_file, orphan_output, fresh):
            open(path, "w").write("orphan")
        os.utime(orphan_file, (1, 1))
        os.utime(orphan_output, (1, 1))
        report = lathe("admin", "gc", "--data", server.data, env=server.server_env).stdout
        assert not os.path.exists(orphan_file) and not os.path.exists(orphan_output), report
        assert os.path.exists(fresh), "younger than the grace period: kept"
    finally:
        server.stop()


class Proxy:
    """A TCP proxy on loopback in front of the S3 endpoint that the test can cut and restore."""

    def __init__(self, target):
        import socket
        import threading
        host, port = target.split("//", 1)[1].split(":")
        self.target = (host, int(port))
        self.connections = []
        self.lock = threading.Lock()
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.open()

    def open(self):
        import socket
        import threading
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        threading.Thread(target=self.accept, args=(self.listener,), daemon=True).start()

    def accept(self, listener):
        import socket
        import threading
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def pump(source, sink):
        import socket
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        """Refuses new connections and drops the open ones (the storage is gone)."""
        import socket
        # shutdown() first: a bare close() leaves the thread blocked in accept() accepting.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                    connection.close()
                except OSError:
                    pass
            self.connections = []


@pytest.mark.skipif(not S3, reason="needs the S3 endpoint (LATHE_TEST_S3, set by scripts/test)")
def test_s3_refused_credentials_and_an_outage(tmp_path):
    # Wrong credentials: one clear line at start, a non-zero exit, the secret never shown.
    data = str(tmp_path / "refused")
    env = dict(os.environ, LATHE_BLOBS="s3://lathe/refused", LATHE_S3_ENDPOINT=S3, AWS_ACCESS_KEY_ID="lathetest",
               AWS_SECRET_ACCESS_KEY="not-the-secret")
    refused = lathe("serve", "--data", data, "--port", "0", env=env, check=False)
    assert refused.returncode != 0
    assert "refused" in refused.stderr and "lathe" in refused.stderr and "not-the-secret" not in refused.stderr + refused.stdout, refused.stderr
    assert len(refused.stderr.strip().splitlines()) <= 2, refused.stderr

    proxy = Proxy(S3)
    server = Server("--gc-interval", "0", samples=("hello",), env={"LATHE_S3_ENDPOINT": proxy.url})
    try:
        pushed = server.versions["hello"]
        assert pushed
        proxy.cut()
        # The storage is gone: blob reads and pushes answer 503 with what to do, nothing is half-registered.
        manifest = httpx.get(f"{server.url}/v2/alice/hello/manifests/latest", headers={**auth(server.token),
                             "Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=30)
        assert manifest.status_code == 503 and "cannot be reached" in manifest.text, manifest.text
        failed = lathe("push", project(tmp_path, "outage"), "alice/outage", "--json", env=server.env, check=False)
        assert failed.returncode != 0 and "503" in failed.stderr, failed.stderr
        assert httpx.get(f"{server.url}/v1/models/alice/outage", headers=auth(server.token), timeout=30).status_code == 404
        # Back again: the same push goes through and the model runs.
        proxy.open()
        again = lathe("push", project(tmp_path, "outage-again"), "alice/outage", "--json", env=server.env, check=False)
        assert again.returncode == 0, again.stderr
        answer = httpx.post(f"{server.url}/v1/models/alice/outage/predictions", json={"input": {"max_words": 2}},
                            headers={**auth(server.token), "Prefer": "wait=60"}, timeout=90).json()
        assert answer["status"] == "succeeded", answer
    finally:
        server.stop()
        proxy.cut()
