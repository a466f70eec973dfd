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
