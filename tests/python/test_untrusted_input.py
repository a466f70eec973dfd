"""Issue 19 ("Hardening II"): what a stranger can post, each test failing on the code before it.
The pushed-config cases live in Tests/EndToEndTests/BadInputConfigTests.swift; these need a
real client's view (streams, raw sockets, memory of the server process)."""
import base64
import socket
import threading
import time

import httpx

from conftest import Server


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def read_events(url, headers=None):
    with httpx.stream("GET", url, headers=headers or {}, timeout=60) as stream:
        if stream.status_code != 200:
            return stream.status_code, []
        seen = []
        for line in stream.iter_lines():
            if line.startswith("event: "):
                seen.append(line[7:])
            if seen and seen[-1] == "done":
                break
        return 200, seen


def test_a_private_prediction_s_stream_needs_its_creator_or_its_signed_url(server):
    created = httpx.post(f"{server.url}/v1/predictions", json={"version": server.versions["hello"], "input": {"text": "secret"}},
                         headers={**auth(server.token), "Prefer": "wait"}, timeout=60).json()
    bare = f"{server.url}/v1/predictions/{created['id']}/stream"
    # The id alone (as webhooks, logs and links carry it) opens nothing, for nobody or another account.
    assert read_events(bare)[0] == 404
    assert read_events(bare, auth(server.bob))[0] == 404
    assert read_events(bare + "?sig=" + "A" * 43)[0] == 404
    other = httpx.post(f"{server.url}/v1/predictions", json={"version": server.versions["hello"], "input": {"text": "x"}},
                       headers={**auth(server.token), "Prefer": "wait"}, timeout=60).json()
    stolen = other["urls"]["stream"].split("?sig=")[1]
    assert read_events(bare + "?sig=" + stolen)[0] == 404, "a signature opens only its own prediction"
    # The creator's token, and the signed URL the prediction names (no token: the JS client's way).
    status, seen = read_events(bare, auth(server.token))
    assert status == 200 and "output" in seen and seen[-1] == "done"
    assert created["urls"]["stream"] != bare and "?sig=" in created["urls"]["stream"]
    status, seen = read_events(created["urls"]["stream"])
    assert status == 200 and seen[-1] == "done"


def post_raw(port, path, length, chunked, results, index):
    """Sends up to `length` bytes of form body and records the status the server answered."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {length}\r\n"
            connection.sendall((head + "\r\n").encode())
            block = b"a" * (1 << 20)
            sent = 0
            try:
                while sent < length:
                    connection.sendall((b"%x\r\n" % len(block)) + block + b"\r\n" if chunked else block)
                    sent += len(block)
                if chunked:
                    connection.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # refused mid-body: the answer is already there
            connection.settimeout(30)
            answer = connection.recv(4096)
            results[index] = int(answer.split(b" ")[1]) if answer else None
    except OSError as error:
        results[index] = repr(error)


def test_eight_anonymous_100_mb_form_posts_are_refused_before_they_are_read():
    fresh = Server(samples=())
    try:
        port = int(fresh.url.rsplit(":", 1)[1])
        baseline = peak_rss_mib(fresh.process.pid)
        results = [None] * 8
        threads = [threading.Thread(target=post_raw, args=(port, path, 100 << 20, index % 2 == 1, results, index))
                   for index, path in enumerate(["/signin", "/signup"] * 4)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        elapsed = time.monotonic() - started
        peak = peak_rss_mib(fresh.process.pid)
        print(f"8 x 100 MB form posts: {results} in {elapsed:.1f} s; peak RSS {baseline:.0f} -> {peak:.0f} MiB")
        assert all(status == 413 for status in results), results
        assert peak < 150, f"peak RSS {peak:.0f} MiB"
        assert httpx.get(f"{fresh.url}/healthz").status_code == 200
        # A form of ordinary size still works (the CSRF check answers, not the size check).
        assert httpx.post(f"{fresh.url}/signin", data={"username": "a", "password": "b"}).status_code == 403
    finally:
        fresh.stop()


def test_basic_auth_needs_the_token_owner_s_name(server):
    def basic(user, token):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}
    assert httpx.get(f"{server.url}/v2/alice/hello/tags/list", headers=basic("alice", server.token)).status_code == 200
    assert httpx.get(f"{server.url}/v2/alice/hello/tags/list", headers=basic("bob", server.token)).status_code == 401
    assert httpx.get(f"{server.url}/v1/account", headers=basic("mallory", server.bob)).status_code == 401
    assert httpx.get(f"{server.url}/v1/account", headers=basic("bob", server.bob)).json()["username"] == "bob"


def test_rate_limits_by_route_and_by_client_address():
    limited = Server("--rate-limit-creates", "3", "--rate-limit-requests", "20", "--trusted-proxy", "127.0.0.1/32", samples=("hello",))
    try:
        body = {"version": limited.versions["hello"], "input": {"text": "x"}}
        # A trailing slash or doubled slashes reach the create route: they spend the create budget.
        remaining = [httpx.post(f"{limited.url}{path}", json=body, headers=auth(limited.token)).headers.get("ratelimit-remaining")
                     for path in ["/v1/predictions/", "//v1//predictions", "/v1/predictions"]]
        assert remaining == ["2", "1", "0"], remaining
        assert httpx.post(f"{limited.url}/v1/predictions/", json=body, headers=auth(limited.token)).status_code == 429
        # Anonymous clients have budgets of their own, by the address the trusted proxy names.
        a, b = {"X-Forwarded-For": "203.0.113.1"}, {"X-Forwarded-For": "198.51.100.7, 203.0.113.2"}
        answers = [httpx.get(f"{limited.url}/v1/models", headers=a).status_code for _ in range(21)]
        assert answers[:20] == [200] * 20 and answers[20] == 429, answers
        assert httpx.get(f"{limited.url}/v1/models", headers=b).status_code == 200, "another client is not throttled"
    finally:
        limited.stop()
    direct = Server("--rate-limit-requests", "5", samples=())
    try:
        # Without --trusted-proxy the header names nothing: a client cannot mint fresh budgets.
        answers = [httpx.get(f"{direct.url}/v1/models", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code for n in range(6)]
        assert answers == [200] * 5 + [429], answers
    finally:
        direct.stop()


def test_v2_uploads_are_bounded_by_the_largest_blob_and_the_owner_s_quota():
    small = Server("--max-blob-size", "1", "--storage-quota", "3", samples=())
    try:
        httpx.post(f"{small.url}/v1/models", json={"owner": "alice", "name": "big", "visibility": "private"}, headers=auth(small.token))
        import hashlib
        def push(data):
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            return httpx.post(f"{small.url}/v2/alice/big/blobs/uploads/", params={"digest": digest}, content=data,
                              headers={**auth(small.token), "Content-Type": "application/octet-stream"}, timeout=60)
        too_big = push(b"x" * (2 << 20))
        assert too_big.status_code == 413 and too_big.json()["errors"][0]["code"] == "SIZE_INVALID", too_big.text
        # Chunked: the chunk that passes the limit is refused, what came before stays for a retry.
        start = httpx.post(f"{small.url}/v2/alice/big/blobs/uploads/", headers=auth(small.token))
        location = small.url + start.headers["location"]
        assert httpx.patch(location, content=b"a" * (900 << 10), headers={**auth(small.token), "Content-Type": "application/octet-stream"}).status_code == 202
        over = httpx.patch(location, content=b"a" * (200 << 10), headers={**auth(small.token), "Content-Type": "application/octet-stream",
                                                                          "Content-Range": f"{900 << 10}-{(1100 << 10) - 1}"})
        assert over.status_code == 413, over.text
        # Three distinct 1 MB blobs fill a 3 MB quota; the fourth is refused, naming the quota.
        for n in range(3):
            assert push(bytes([n]) * (1 << 20)).status_code == 201
        full = push(b"\x09" * (1 << 20))
        assert full.status_code == 413 and "quota" in full.json()["errors"][0]["message"], full.text
        # A blob already stored costs nothing again.
        assert push(bytes([0]) * (1 << 20)).status_code in (201, 413)
    finally:
        small.stop()
