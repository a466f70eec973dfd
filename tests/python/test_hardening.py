"""A hostile user against a default `lathe serve` (issue 8): each test here failed on the
registry before the hardening work and must keep passing. 127.0.0.2 plays "another host on the
internet" (the session server allows it with --allow-outbound); the rest of loopback is the
registry's own machine, which users must never reach through it."""
import functools
import http.server
import io
import json
import os
import random
import socket
import tarfile
import threading
import time
import uuid

import httpx
import pytest

from conftest import LATHE, ROOT, Server, lathe, stored_keys

EXAMPLE_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==")


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def alive(server):
    assert server.process.poll() is None, "the server process died:\n" + server.log()
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


def serve_folder(folder, host="127.0.0.2", handler_class=None):
    handler = handler_class or functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


# MARK: - 2. Requests that killed the server


def test_three_hostile_headers_leave_the_server_up(server):
    hello = server.versions["hello"]
    answer = httpx.post(f"{server.url}/v1/predictions", json={"version": hello, "input": {"text": "x"}},
                        headers={**auth(server.token), "Prefer": "wait=nan"}, timeout=30)
    assert answer.status_code == 400 and "Prefer" in answer.json()["detail"]
    assert answer.headers["content-type"].startswith("application/problem+json")
    answer = httpx.post(f"{server.url}/v1/predictions", json={"version": hello, "input": {"text": "x"}},
                        headers={**auth(server.token), "Cancel-After": "9999999999999h"}, timeout=30)
    assert answer.status_code == 400 and "Cancel-After" in answer.json()["detail"]
    start = httpx.post(f"{server.url}/v2/alice/hello/blobs/uploads/", headers=auth(server.token))
    assert start.status_code == 202
    patch = httpx.patch(server.url + start.headers["location"], content=b"abc",
                        headers={**auth(server.token), "Content-Range": "bytes /", "Content-Type": "application/octet-stream"})
    assert patch.status_code == 400 and patch.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    alive(server)


HOSTILE = ["", " ", "-1", "0", "nan", "inf", "-inf", "1e400", "9" * 40, "9999999999999h", "1h" * 50, "bytes /", "bytes=-", "bytes=5-1",
           "bytes=0-0,1-1", "bytes=99999999999999999999-", "wait=", "wait=-5", "wait=1e308", "wait=0x10", "%00", "\x7f", "é" * 10,
           "../../etc/passwd", "a" * 5000, "null", "{}", "[]", "sha256:" + "0" * 64, "sha256:zz", "'; DROP TABLE models; --"]
JSON_BODIES = [b"", b"{", b"[]", b"null", b"1e999", b'{"version": 5}', b'{"input": []}', b'{"version": "x", "input": {"text": 1}}',
               b'{"webhook": "http://"}', b'\xff\xfe{"a": "\xc3\x28"}', b'{"a": "' + b"\\ud800" + b'"}', b'{"a":' * 500, b'{"hardware": null}',
               b'{"prediction_id": []}', b'{"name": {"x": 1}}', b'{"visibility": 42}', b'{"members": "x"}',
               b'{"destination": "alice/hello", "input": {"text": 1}}', b'{"destination": ["x"]}', b'{"destination": "../..", "input": []}']
ROUTES = [
    ("GET", "/v1/account"), ("GET", "/v1/models"), ("POST", "/v1/models"), ("QUERY", "/v1/models"), ("GET", "/v1/models/{o}/{n}"),
    ("PATCH", "/v1/models/{o}/{n}"), ("DELETE", "/v1/models/{o}/{n}"), ("GET", "/v1/models/{o}/{n}/versions"),
    ("GET", "/v1/models/{o}/{n}/versions/{id}"), ("GET", "/v1/models/{o}/{n}/readme"), ("POST", "/v1/predictions"),
    ("POST", "/v1/models/{o}/{n}/predictions"), ("GET", "/v1/predictions"), ("GET", "/v1/predictions/{id}"),
    ("POST", "/v1/predictions/{id}/cancel"), ("POST", "/v1/predictions/{id}/share"), ("DELETE", "/v1/predictions/{id}"),
    ("GET", "/v1/predictions/{id}/stream"), ("GET", "/v1/deployments"), ("POST", "/v1/deployments"), ("GET", "/v1/deployments/{o}/{n}"),
    ("PATCH", "/v1/deployments/{o}/{n}"), ("POST", "/v1/deployments/{o}/{n}/predictions"), ("GET", "/v1/files"), ("POST", "/v1/files"),
    ("GET", "/v1/files/{id}"), ("DELETE", "/v1/files/{id}"), ("GET", "/v1/hardware"), ("GET", "/v1/webhooks/default/secret"),
    ("GET", "/v1/tokens"), ("POST", "/v1/tokens"), ("DELETE", "/v1/tokens/{id}"), ("GET", "/v1/organizations"),
    ("POST", "/v1/organizations"), ("GET", "/v1/organizations/{o}/members"), ("PUT", "/v1/organizations/{o}/members/{n}"),
    ("POST", "/v1/models/{o}/{n}/examples"), ("GET", "/v1/models/{o}/{n}/examples"), ("GET", "/v1/{id}"),
    ("POST", "/v1/models/{o}/{n}/versions/{id}/trainings"), ("GET", "/v1/trainings"), ("GET", "/v1/trainings/{id}"),
    ("POST", "/v1/trainings/{id}/cancel"),
    ("GET", "/v2/"), ("GET", "/v2/{o}/{n}/tags/list"), ("GET", "/v2/{o}/{n}/manifests/{id}"), ("PUT", "/v2/{o}/{n}/manifests/{id}"),
    ("HEAD", "/v2/{o}/{n}/blobs/{id}"), ("GET", "/v2/{o}/{n}/blobs/{id}"), ("POST", "/v2/{o}/{n}/blobs/uploads/"),
    ("PATCH", "/v2/{o}/{n}/blobs/uploads/{id}"), ("PUT", "/v2/{o}/{n}/blobs/uploads/{id}"), ("GET", "/v2/{o}/{n}/blobs/uploads/{id}"),
    ("DELETE", "/v2/{o}/{n}/blobs/uploads/{id}"), ("GET", "/"), ("GET", "/{o}"), ("GET", "/{o}/{n}"), ("GET", "/p/{id}"), ("GET", "/signin"),
    ("POST", "/signin"), ("POST", "/signup"), ("GET", "/dashboard"), ("GET", "/files/{id}/{n}"), ("GET", "/static/{n}"), ("GET", "/{o}/{n}/{id}"),
]
HEADERS = ["Prefer", "Cancel-After", "Range", "Content-Range", "Content-Type", "Authorization", "Cookie", "Origin", "X-Forwarded-Proto",
           "Accept", "If-None-Match", "Content-Length"]


def raw_request(port, method, path, headers, body):
    """One request over a raw socket, so that values httpx would refuse to send still go out."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    for name, value in headers:
        head += f"{name}: {value}\r\n"
    if not any(name.lower() == "content-length" for name, _ in headers):
        head += f"Content-Length: {len(body)}\r\n"
    data = head.encode("utf-8", "surrogateescape") + b"\r\n" + body
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(data)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
            if len(answer) > 1 << 20:
                break
    if not answer:
        return None, {}, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    fields = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in lines[1:] if ":" in line}
    return status, fields, body


def valid_http(path, headers):
    """Whether the request line and header values use only the bytes HTTP/1.1 allows there."""
    def visible(text, allow_space):
        return all(0x21 <= ord(c) <= 0x7e or (allow_space and c in " \t") for c in text)
    return visible(path, False) and all(visible(value, True) for _, value in headers)


def shape_problem(path, status, kind, answer):
    """What is wrong with an error answer's shape, or None."""
    try:
        if path.startswith("/v1/") or path.split("?")[0] == "/v1":
            if not kind.startswith("application/problem+json") or not json.loads(answer).get("detail"):
                return f"{kind} {answer[:200]!r} is not problem+json with a detail"
        elif path.startswith("/v2/"):
            if not json.loads(answer)["errors"][0]["message"]:
                return f"{answer[:200]!r} is not an OCI error"
        elif status != 429 and not kind.startswith("text/html"):
            return f"{kind} {answer[:100]!r}: pages answer errors as HTML"
    except (ValueError, KeyError, IndexError):
        return f"{kind} {answer[:200]!r} does not parse"
    return None


def test_fuzz_every_route_answers_4xx_in_its_surfaces_shape(server):
    """Thousands of hostile header values, path parameters, query values and JSON bodies across
    every route: the server never dies, never answers 5xx, and every 4xx says what was wrong in the
    shape of its surface (problem+json under /v1, the distribution spec's JSON under /v2)."""
    count = int(os.environ.get("LATHE_FUZZ_COUNT", "3000"))
    rng = random.Random(8)
    port = int(server.url.rsplit(":", 1)[1])
    tokens = [server.token, server.bob, "lat_" + "x" * 40, "", "Basic " + "=" * 10]
    params = {"o": ["alice", "bob", "..", "%2e%2e", "a" * 300, "ALICE", "%00", "v1"], "n": ["hello", "nope", "..", "%2F", "x" * 300, "app.js"],
              "id": ["sha256:" + "0" * 64, "sha256:bad", "x" * 26, "..%2F..%2Fetc", "-1", "9" * 30, "%ff%fe", "latest"]}
    failures = []
    for index in range(count):
        method, template = rng.choice(ROUTES)
        path = template
        for key, values in params.items():
            path = path.replace("{" + key + "}", rng.choice(values))
        if rng.random() < 0.4:
            path += "?" + "&".join(f"{rng.choice(['n', 'last', 'cursor', 'q', 'next', 'digest', 'mount', 'from', 'created_after'])}="
                                   f"{rng.choice(HOSTILE).replace(' ', '%20').replace('#', '%23')}" for _ in range(rng.randint(1, 3)))
        headers = []
        token = rng.choice(tokens)
        if token:
            headers.append(("Authorization", token if " " in token else f"Bearer {token}"))
        for _ in range(rng.randint(0, 3)):
            name = rng.choice(HEADERS)
            if name == "Content-Length":
                continue
            headers.append((name, rng.choice(HOSTILE)))
        body = rng.choice(JSON_BODIES) if method in ("POST", "PUT", "PATCH", "QUERY") else b""
        if method in ("POST", "PUT", "PATCH", "QUERY") and not any(name == "Content-Type" for name, _ in headers):
            headers.append(("Content-Type", "application/json"))
        status, fields, answer = raw_request(port, method, path, headers, body)
        if status is None:
            # A request line the HTTP parser refuses may be dropped; the server must still be up.
            alive(server)
            continue
        if status >= 500:
            failures.append(f"{method} {path} {headers} -> {status} {answer[:200]!r}")
        elif status == 400 and not answer and not valid_http(path, headers):
            # Bytes HTTP forbids in the request line or a header value (DEL, raw UTF-8) are refused
            # by the HTTP parser before any route runs: a bare 400 and a closed connection.
            continue
        elif status >= 400 and method != "HEAD":
            problem = shape_problem(path, status, fields.get("content-type", ""), answer)
            if problem:
                failures.append(f"{method} {path} {headers} -> {status}: {problem}")
        if index % 250 == 0:
            alive(server)
    alive(server)
    assert not failures, f"{len(failures)} bad answers of {count}, first ones:\n" + "\n".join(failures[:10])


def test_unknown_pages_are_real_404_pages(server):
    for path in ["/login", "/nobody-here", "/alice/nope", "/p/" + "x" * 26]:
        page = httpx.get(server.url + path)
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html"), path
        assert "Not found" in page.text and "<html" in page.text.lower(), path
    api = httpx.get(f"{server.url}/v1/nothing-here", headers=auth(server.token))
    assert api.status_code == 404 and api.json()["detail"]


def test_json_errors_are_sentences(server):
    url = f"{server.url}/v1/predictions"
    big = httpx.post(url, content=b'{"input": {"text": "' + b"a" * (3 << 20) + b'"}}', headers={**auth(server.token), "Content-Type": "application/json"})
    assert big.status_code == 413 and "MB" in big.json()["detail"]
    wrong = httpx.post(url, content=b'{"version": 5}', headers={**auth(server.token), "Content-Type": "application/json"})
    assert wrong.status_code == 400 and "`version` must be a string" in wrong.json()["detail"], wrong.text
    binary = httpx.post(url, content=b'{"version": "\xff\xfe"}', headers={**auth(server.token), "Content-Type": "application/json"})
    assert binary.status_code == 400 and "UTF-8" in binary.json()["detail"]
    hook = httpx.post(url, json={"version": server.versions["hello"], "input": {"text": "x"}, "webhook": "http://"}, headers=auth(server.token))
    assert hook.status_code == 400 and "no host" in hook.json()["detail"]


# MARK: - 3. SSRF


def test_url_inputs_cannot_reach_the_servers_own_machine(server):
    client = server.client()
    port = int(server.url.rsplit(":", 1)[1])
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    errors = []
    for url in [f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{closed_port}/x.png", f"http://localhost:{port}/healthz",
                f"http://[::1]:{port}/metrics", f"http://[::ffff:127.0.0.1]:{port}/metrics", "http://169.254.169.254/latest/meta-data/",
                f"http://0.0.0.0:{port}/metrics", f"http://2130706433:{port}/metrics"]:
        prediction = client.predictions.create(version=server.versions["image"], input={"image": url})
        prediction.wait()
        assert prediction.status == "failed", url
        assert "lathe_" not in (prediction.error or "") and "# TYPE" not in (prediction.error or "")
        errors.append(prediction.error)
    assert all("does not connect to" in error or "does not resolve" in error for error in errors), errors
    # An open port and a closed one read the same: no port scanning through error text.
    assert errors[0].replace(str(port), "P") == errors[1].replace(str(closed_port), "P").replace("/x.png", "/metrics")

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{port}/metrics")
            self.end_headers()

    outside = serve_folder(None, handler_class=Redirect)
    try:
        prediction = client.predictions.create(version=server.versions["image"],
                                               input={"image": f"http://127.0.0.2:{outside.server_address[1]}/photo.png"})
        prediction.wait()
        assert prediction.status == "failed" and "does not connect to" in prediction.error, prediction.error
    finally:
        outside.shutdown()


def test_webhooks_are_not_posted_to_the_servers_machine(server):
    received = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.path)
            self.send_response(200)
            self.end_headers()

    inside = serve_folder(None, host="127.0.0.1", handler_class=Receiver)
    try:
        literal = httpx.post(f"{server.url}/v1/predictions", headers=auth(server.token),
                             json={"version": server.versions["hello"], "input": {"text": "x"},
                                   "webhook": f"http://127.0.0.1:{inside.server_address[1]}/hook"})
        assert literal.status_code == 400 and "not an address this server posts to" in literal.json()["detail"]
        # The refusal says why it is the default and which flag allows it (issue 23).
        assert "refused by default" in literal.json()["detail"] and "lathe serve --allow-outbound 127.0.0." in literal.json()["detail"], literal.json()
        named = httpx.post(f"{server.url}/v1/predictions", headers={**auth(server.token), "Prefer": "wait"},
                           json={"version": server.versions["hello"], "input": {"text": "x"},
                                 "webhook": f"http://localhost:{inside.server_address[1]}/hook", "webhook_events_filter": ["completed"]})
        assert named.status_code == 201 and named.json()["status"] == "succeeded"
        time.sleep(3)
        assert received == [], "a webhook reached a loopback service through a host name"
    finally:
        inside.shutdown()


# MARK: - 5. Downloads within the prediction's limits


def test_downloads_stop_on_cancel_and_size_and_leave_nothing(server, tmp_path):
    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            if self.path.startswith("/huge"):
                self.end_headers()  # no Content-Length: the limit must hold while streaming
                block = b"\0" * (1 << 20)
                try:
                    for _ in range(120):
                        self.wfile.write(block)
                except OSError:
                    pass
                return
            self.send_header("Content-Length", str(50 << 20))
            self.end_headers()
            try:
                for _ in range(600):
                    self.wfile.write(b"\0" * 1024)
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass

    outside = serve_folder(None, handler_class=Trickle)
    base = f"http://127.0.0.2:{outside.server_address[1]}"
    client = server.client()
    try:
        slow = client.predictions.create(version=server.versions["image"], input={"image": base + "/slow.png"})
        time.sleep(1.5)
        started = time.time()
        slow.cancel()
        while slow.status not in ("canceled", "failed", "succeeded") and time.time() - started < 10:
            time.sleep(0.1)
            slow.reload()
        assert slow.status == "canceled" and time.time() - started < 3, (slow.status, slow.error)

        huge = client.predictions.create(version=server.versions["image"], input={"image": base + "/huge.png"})
        huge.wait()
        assert huge.status == "failed" and "larger than 100 MB" in huge.error, huge.error
    finally:
        outside.shutdown()
    inputs = [os.path.join(root, name) for root, _, names in os.walk(os.path.join(server.scratch, "data", "runtime", "work"))
              for name in names if "/inputs/" in root]
    assert inputs == [], f"downloads left behind: {inputs[:5]}"


# MARK: - 1. Environment builds run sandboxed


def evil_sdist(marker, data_folder, registry_port):
    """An sdist whose setup.py, run by any installer, tries to leave marks on the host and to reach
    the registry's own port on loopback and the cloud metadata address, directly and through the
    proxy the installer was given."""
    setup = f"""
import os, socket, time, urllib.request
print("EVIL-BUILD-RAN", flush=True)
for path in [{marker!r}, {os.path.join(data_folder, "evil-was-here")!r}]:
    try:
        open(path, "w").write("owned")
    except OSError as error:
        print("could not write", path, error, flush=True)
for host, port in [("127.0.0.1", {registry_port}), ("169.254.169.254", 80)]:
    try:
        socket.create_connection((host, port), timeout=3).close()
        print("EVIL-NET direct", host, "connected", flush=True)
    except OSError as error:
        print("EVIL-NET direct", host, "failed", error, flush=True)
    try:
        answer = urllib.request.urlopen(f"http://{{host}}:{{port}}/healthz", timeout=5).read()
        print("EVIL-NET proxy", host, "READ", answer[:40], flush=True)
    except Exception as error:
        print("EVIL-NET proxy", host, "failed", error, flush=True)
time.sleep(12)
raise SystemExit("evil build gives up")
"""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in [("evil-0.1/setup.py", setup), ("evil-0.1/PKG-INFO", "Metadata-Version: 2.1\nName: evil\nVersion: 0.1\n")]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_environment_builds_run_sandboxed_and_block_nobody_else(tmp_path, server):
    marker = f"/tmp/lathe-evil-marker-{uuid.uuid4().hex}"
    folder = tmp_path / "dist"
    folder.mkdir()
    project = tmp_path / "evil"
    project.mkdir()
    # The operator allows direct requirements and the file server on 127.0.0.2 (another host here).
    permissive = Server("--allow-direct-requirements", "--allow-outbound", "127.0.0.2/32", samples=("hello",))
    outside = serve_folder(str(folder))
    try:
        registry_port = int(permissive.url.rsplit(":", 1)[1])
        (folder / "evil-0.1.tar.gz").write_bytes(evil_sdist(marker, os.path.join(permissive.scratch, "data"), registry_port))
        url = f"http://127.0.0.2:{outside.server_address[1]}/evil-0.1.tar.gz"
        (project / "lathe.yaml").write_text(f'python: "3.11"\npython_packages: ["evil @ {url}"]\npredict: predict.py:predict\n'
                                            "inputs:\n  text: {type: string}\noutput: {type: string}\n")
        (project / "predict.py").write_text("def predict(text: str) -> str:\n    return text\n")

        refused = lathe("push", str(project), "alice/evil", env=server.env, check=False)
        assert refused.returncode != 0 and "direct reference" in refused.stderr and "operator" in refused.stderr, refused.stderr

        lathe("push", str(project), "alice/evil", env=permissive.env)
        assert httpx.patch(f"{permissive.url}/v1/models/alice/hello", json={"visibility": "public"}, headers=auth(permissive.token)).status_code == 200
        warm = httpx.post(f"{permissive.url}/v1/models/alice/hello/predictions", json={"input": {"text": "warm"}},
                          headers={**auth(permissive.token), "Prefer": "wait"}, timeout=60)
        assert warm.json()["status"] == "succeeded"
        evil = httpx.post(f"{permissive.url}/v1/models/alice/evil/predictions", json={"input": {"text": "x"}}, headers=auth(permissive.token)).json()
        deadline, state = time.time() + 60, {}
        while "Creating Python" not in (state.get("logs") or "") and time.time() < deadline:
            time.sleep(0.3)
            state = httpx.get(f"{permissive.url}/v1/predictions/{evil['id']}", headers=auth(permissive.token)).json()
        assert "Creating Python" in state["logs"] and state["status"] == "starting", \
            "the build's output streams into the waiting prediction's logs while it builds: " + permissive.log()
        # While that build sleeps, another user's work is not held up.
        started = time.time()
        other = httpx.post(f"{permissive.url}/v1/models/alice/hello/predictions", json={"input": {"text": "meanwhile"}},
                           headers={**auth(permissive.bob), "Prefer": "wait"}, timeout=60)
        listing = httpx.get(f"{permissive.url}/v1/predictions", headers=auth(permissive.bob), timeout=60)
        assert other.status_code == 201 and other.json()["status"] == "succeeded" and listing.status_code == 200
        assert time.time() - started < 5, f"other users waited {time.time() - started:.1f} s behind a build"
        deadline = time.time() + 120
        while time.time() < deadline:
            state = httpx.get(f"{permissive.url}/v1/predictions/{evil['id']}", headers=auth(permissive.token)).json()
            if state["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.5)
        # A failed build fails the waiting prediction with its last lines (the build's own output).
        assert state["status"] == "failed" and "evil build gives up" in state["error"], state
        assert "EVIL-BUILD-RAN" in state["error"] + (state["logs"] or ""), state
        # The build's network is its own: nothing of this machine answers directly, and the proxy
        # the installer uses refuses loopback and the metadata address with a sentence.
        output = state["error"] + (state["logs"] or "")
        for host in ["127.0.0.1", "169.254.169.254"]:
            assert f"EVIL-NET direct {host} failed" in output, output
            assert f"EVIL-NET proxy {host} failed HTTP Error 403" in output, output
        assert "READ" not in output and "connected" not in output, output
        assert f"egress: refused 127.0.0.1:{registry_port}" in output, output
        assert not os.path.exists(marker), "build code wrote to the host's /tmp"
        assert not os.path.exists(os.path.join(permissive.scratch, "data", "evil-was-here")), "build code wrote into the server's data"
    finally:
        outside.shutdown()
        permissive.stop()
        if os.path.exists(marker):
            os.remove(marker)


# MARK: - 4. Fair capacity


def test_one_account_cannot_take_every_instance(tmp_path):
    crowded = Server("--max-instances-total", "2", "--max-warm-per-account", "2", "--idle-timeout", "300", samples=("hello",))
    try:
        bob_env = dict(crowded.env, LATHE_TOKEN=crowded.bob)
        lathe("push", os.path.join(ROOT, "samples", "hello"), "bob/hello", env=bob_env)
        body = {"name": "greeter", "model": "alice/hello", "version": crowded.versions["hello"], "hardware": "cpu",
                "min_instances": 5, "max_instances": 5}
        too_many = httpx.post(f"{crowded.url}/v1/deployments", json=body, headers=auth(crowded.token))
        assert too_many.status_code == 400 and "limit of 2 per account" in too_many.json()["detail"], too_many.text
        created = httpx.post(f"{crowded.url}/v1/deployments", json={**body, "min_instances": 2}, headers=auth(crowded.token))
        assert created.status_code == 201, created.text
        second = httpx.post(f"{crowded.url}/v1/deployments", json={**body, "name": "other", "min_instances": 1}, headers=auth(crowded.token))
        assert second.status_code == 400, "a second deployment may not push the account past its warm limit"
        deadline = time.time() + 60
        while crowded.instances() < 2 and time.time() < deadline:
            time.sleep(0.5)
        assert crowded.instances() == 2, "alice's deployment holds every slot:\n" + crowded.log()
        # Bob's prediction gets a slot: an instance kept warm only for alice's minimum gives way.
        started = time.time()
        answer = httpx.post(f"{crowded.url}/v1/models/bob/hello/predictions", json={"input": {"text": "bob"}},
                            headers={**auth(crowded.bob), "Prefer": "wait=30"}, timeout=60).json()
        assert answer["status"] == "succeeded" and answer["output"] == "Hello, bob!", answer
        assert time.time() - started < 20
        assert crowded.instances() <= 2
    finally:
        crowded.stop()


# MARK: - 7. Connections


def test_hundreds_of_idle_and_slow_connections_do_not_stop_predictions():
    import resource

    def low_descriptor_limit():
        # As on the machine where 600 connections exhausted a soft limit of 512.
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))

    busy = Server("--connection-timeout", "3", samples=("hello",), preexec_fn=low_descriptor_limit)
    port = int(busy.url.rsplit(":", 1)[1])
    idle, slow = [], []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        for _ in range(300):
            connection = socket.create_connection(("127.0.0.1", port), timeout=10)
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            slow.append(connection)
        stop = threading.Event()

        def trickle():
            # Slow headers: one more header line every half second, never the blank line.
            while not stop.is_set():
                for connection in slow:
                    try:
                        connection.sendall(b"X-Slow: 1\r\n")
                    except OSError:
                        pass
                time.sleep(0.5)

        threading.Thread(target=trickle, daemon=True).start()
        started = time.time()
        for index in range(5):
            answer = httpx.post(f"{busy.url}/v1/models/alice/hello/predictions", json={"input": {"text": str(index)}},
                                headers={**auth(busy.token), "Prefer": "wait"}, timeout=30).json()
            assert answer["status"] == "succeeded", answer
        assert time.time() - started < 30
        time.sleep(4)
        stop.set()

        def closed(connection):
            connection.settimeout(2)
            try:
                return connection.recv(1) == b""
            except (ConnectionResetError, BrokenPipeError):
                return True
            except socket.timeout:
                return False

        assert all(closed(c) for c in idle[:50]), "idle connections are closed after --connection-timeout"
        assert all(closed(c) for c in slow[:50]), "connections whose headers never finish are closed too"
        alive(busy)
    finally:
        for connection in idle + slow:
            connection.close()
        busy.stop()


# MARK: - 6. Quotas and cleanup


def upload(server, name, size, token=None):
    files = {"content": (name, b"\1" * size, "application/octet-stream")}
    return httpx.post(f"{server.url}/v1/files", files=files, headers=auth(token or server.token), timeout=60)


def test_disk_is_bounded_quota_expiry_abandoned_uploads_and_unpacked_versions(tmp_path):
    import sqlite3

    tidy = Server("--file-quota", "1", "--upload-max-age", "2", "--housekeeping-interval", "1", "--idle-timeout", "1", samples=("hello",))
    data = os.path.join(tidy.scratch, "data")
    try:
        first = upload(tidy, "a.bin", 600 << 10)
        assert first.status_code == 201, first.text
        second = upload(tidy, "b.bin", 600 << 10)
        assert second.status_code == 413 and "quota of 1 MB" in second.json()["detail"], second.text
        assert upload(tidy, "c.bin", 100 << 10, token=tidy.bob).status_code == 201, "quotas are per account"

        # A file past its expires_at is removed, row and bytes.
        file_id = first.json()["id"]
        expire = f"UPDATE files SET expires_at = '2000-01-01T00:00:00Z' WHERE id = '{file_id}'"
        if "LATHE_DATABASE_URL" in tidy.server_env:
            import subprocess
            subprocess.run(["psql", tidy.server_env["LATHE_DATABASE_URL"], "-qtAc", expire], check=True)
        else:
            with sqlite3.connect(os.path.join(data, "registry.sqlite")) as database:
                database.execute(expire)
        # An OCI upload begun and abandoned, and a /v1/files upload cut off mid-body.
        start = httpx.post(f"{tidy.url}/v2/alice/hello/blobs/uploads/", headers=auth(tidy.token))
        location = tidy.url + start.headers["location"]
        assert httpx.patch(location, content=b"x" * 1000, headers={**auth(tidy.token), "Content-Type": "application/octet-stream"}).status_code == 202
        port = int(tidy.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as cut:
            cut.sendall(b"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tidy.token.encode()
                        + b"\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 500000\r\n\r\n"
                        + b"--b\r\nContent-Disposition: form-data; name=\"content\"; filename=\"cut.bin\"\r\n\r\n" + b"z" * 20000)
            time.sleep(0.5)
        # A prediction unpacks hello; its instance stops after the 1 s idle timeout.
        done = httpx.post(f"{tidy.url}/v1/models/alice/hello/predictions", json={"input": {"text": "x"}},
                          headers={**auth(tidy.token), "Prefer": "wait"}, timeout=60).json()
        assert done["status"] == "succeeded"
        deadline = time.time() + 20
        instances = os.path.join(data, "runtime", "instances")

        def leftovers():
            found = []
            if httpx.get(f"{tidy.url}/v1/files/{file_id}", headers=auth(tidy.token)).status_code != 404:
                found.append("expired file still listed")
            if f"files/{file_id}" in stored_keys(tidy, "files/"):
                found.append("expired file's bytes")
            found += [f"upload {name}" for name in stored_keys(tidy, "uploads/")]
            # A /v1/files upload streams into the replica's own runtime folder until it is complete.
            partials = os.path.join(data, "runtime", "tmp", "files")
            found += [f"partial {name}" for name in (os.listdir(partials) if os.path.isdir(partials) else [])]
            if os.path.isdir(instances):
                found += [f"unpacked {name}" for name in os.listdir(instances)]
            return found

        while leftovers() and time.time() < deadline:
            time.sleep(0.5)
        assert leftovers() == [], leftovers()
        status = httpx.get(location, headers=auth(tidy.token))
        assert status.status_code == 404 and status.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    finally:
        tidy.stop()


def test_code_layer_bombs_are_refused_at_push(tmp_path):
    project = tmp_path / "bomb"
    project.mkdir()
    (project / "lathe.yaml").write_text('python: "3.11"\npredict: predict.py:predict\ninputs:\n  text: {type: string}\noutput: {type: string}\n')
    (project / "predict.py").write_text("def predict(text: str) -> str:\n    return text\n")
    with open(project / "zeros.bin", "wb") as zeros:
        zeros.truncate(300 << 20)  # 300 MB of zeros: a few hundred KB once gzipped
    bombed = Server(samples=())
    try:
        refused = lathe("push", str(project), "alice/bomb", env=bombed.env, check=False)
        assert refused.returncode != 0 and "inflates to more than" in refused.stderr, refused.stderr
        assert httpx.get(f"{bombed.url}/v1/models/alice/bomb", headers=auth(bombed.token)).json().get("latest_version") in (None, {}), \
            "nothing was registered"
    finally:
        bombed.stop()


# MARK: - 8. Accounts


def browser(server, local="127.0.0.1"):
    return httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(local_address=local), follow_redirects=False, timeout=30)


def csrf_of(page):
    import re
    return re.search(r'name="_csrf" value="([0-9a-f]+)"', page.text).group(1)


def sign_up(server, username, password):
    client = browser(server)
    page = client.get("/signup")
    answer = client.post("/signup", data={"_csrf": csrf_of(page), "username": username, "password": password, "next": "/account"})
    assert answer.status_code == 303, answer.text[:300]
    return client


def test_sign_in_throttling_timing_next_and_csrf(server):
    sign_up(server, "carol", "correct horse battery")

    def attempt(client, username, password, next_path="/"):
        page = client.get("/signin")
        started = time.time()
        answer = client.post("/signin", data={"_csrf": csrf_of(page), "username": username, "password": password, "next": next_path})
        return answer, time.time() - started

    # Unknown users take as long as known ones (bcrypt either way).
    probe = browser(server, "127.0.0.4")
    unknown = sorted(attempt(probe, f"nobody{i}", "x")[1] for i in range(5))[2]
    known = sorted(attempt(probe, "carol", f"wrong{i}")[1] for i in range(2))[0]
    assert 0.5 < unknown / known < 2, f"unknown user {unknown * 1000:.0f} ms vs known {known * 1000:.0f} ms"

    # An attacker elsewhere hammering carol's password is throttled, with growing delays...
    attacker = browser(server, "127.0.0.3")
    statuses = [attempt(attacker, "carol", f"guess{i}")[0].status_code for i in range(11)]
    assert statuses[-1] == 429 and "Retry-After" in attempt(attacker, "carol", "guess")[0].headers
    # ...but carol, from her own address, is not locked out.
    carol = browser(server)
    answer, _ = attempt(carol, "carol", "correct horse battery", next_path="/%09/evil.example/")
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.headers.get("location")
    for hostile in ["/%09/evil.example", "/\t/evil.example", "//evil.example", "/\\evil.example", "https://evil.example", "/%5Cevil"]:
        page = carol.get("/signin", params={"next": hostile})
        assert 'name="next" value="/"' in page.text, hostile
    assert 'name="next" value="/dashboard?status=failed"' in carol.get("/signin", params={"next": "/dashboard?status=failed"}).text.replace("&amp;", "&")

    # Signed in, a CSRF token planted as a cookie (double-submit) no longer passes.
    planted = "ab" * 32
    carol.cookies.set("lathe_csrf", planted)
    forged = carol.post("/account/tokens", data={"_csrf": planted, "label": "forged"})
    assert forged.status_code == 403, forged.status_code
    real = carol.post("/account/tokens", data={"_csrf": csrf_of(carol.get("/account")), "label": "mine"})
    assert real.status_code in (200, 303), real.status_code


def test_metrics_are_not_public():
    metered = Server("--metrics-token", "s3cret", "--metrics-listen", "127.0.0.1:0", samples=())
    try:
        assert httpx.get(f"{metered.url}/metrics").status_code == 401
        assert httpx.get(f"{metered.url}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        scraped = httpx.get(f"{metered.url}/metrics", headers={"Authorization": "Bearer s3cret"})
        assert scraped.status_code == 200 and "hb_request" in scraped.text
    finally:
        metered.stop()
    plain = Server(samples=())
    try:
        assert httpx.get(f"{plain.url}/metrics").status_code == 404, "no token, no listen address: /metrics is not served publicly"
    finally:
        plain.stop()


# MARK: - 9. Pages


def test_owner_pages_list_what_the_visitor_may_see(server):
    anonymous = httpx.get(f"{server.url}/alice")
    assert anonymous.status_code == 200 and "alice" in anonymous.text
    assert "alice/hello" not in anonymous.text, "private models are invisible on the owner page"
    signed_in = sign_up(server, "dave", "correct horse battery")
    assert "has no models you can see" in signed_in.get("/alice").text
    httpx.patch(f"{server.url}/v1/models/alice/classifier", json={"visibility": "public"}, headers=auth(server.token))
    assert "alice/classifier" in httpx.get(f"{server.url}/alice").text
    page = httpx.get(f"{server.url}/alice/classifier")
    assert "License: </span>" not in page.text and 'License: <' not in page.text, "no empty license badge"
    assert httpx.get(f"{server.url}/nobody-at-all").status_code == 404
    httpx.patch(f"{server.url}/v1/models/alice/classifier", json={"visibility": "private"}, headers=auth(server.token))
