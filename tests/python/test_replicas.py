"""Two `lathe serve` replicas on one PostgreSQL and one data folder behave as one registry
(issue 9): through nginx (deploy/nginx.conf) and replica to replica. Runs only on PostgreSQL
(scripts/test starts a cluster and sets LATHE_TEST_POSTGRES)."""
import json
import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import POSTGRES, ROOT, Server, WebhookReceiver, lathe

pytestmark = pytest.mark.skipif(not POSTGRES, reason="replicas need PostgreSQL (set LATHE_TEST_POSTGRES, as scripts/test does)")


def auth(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def cluster():
    running = Server("--idle-timeout", "60", "--allow-outbound", "127.0.0.2/32", "--rate-limit-requests", "400",
                     samples=("hello", "streamer"), replicas=2)
    yield running
    running.stop()


def replica_urls(cluster):
    return [url for _, _, url in cluster.replicas]


def test_push_to_one_pull_from_the_other_and_resume_an_upload_across(cluster, tmp_path):
    a, b = replica_urls(cluster)
    pushed = json.loads(lathe("push", os.path.join(ROOT, "samples", "classifier"), "alice/classifier", "--json",
                              env=dict(cluster.env, LATHE_REGISTRY=a)).stdout)
    pulled = lathe("pull", f"alice/classifier:{pushed['version']}", env=dict(cluster.env, LATHE_REGISTRY=b, LATHE_HOME=str(tmp_path / "home")))
    assert pushed["version"] in pulled.stdout + pulled.stderr

    # A chunked upload begun on A continues on B and completes there.
    import hashlib
    blob = os.urandom(3 << 20)
    start = httpx.post(f"{a}/v2/alice/classifier/blobs/uploads/", headers=auth(cluster.token))
    location = start.headers["location"]
    first = httpx.patch(a + location, content=blob[:1 << 20], headers={**auth(cluster.token), "Content-Range": f"0-{(1 << 20) - 1}"})
    assert first.status_code == 202
    status = httpx.get(b + location, headers=auth(cluster.token))
    assert status.status_code == 204 and status.headers["range"] == f"0-{(1 << 20) - 1}"
    rest = httpx.patch(b + location, content=blob[1 << 20:], headers={**auth(cluster.token), "Content-Range": f"{1 << 20}-{len(blob) - 1}"})
    assert rest.status_code == 202
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    done = httpx.put(b + location, params={"digest": digest}, headers=auth(cluster.token))
    assert done.status_code == 201, done.text
    assert httpx.head(f"{a}/v2/alice/classifier/blobs/{digest}", headers=auth(cluster.token)).status_code == 200


def test_a_named_upload_interrupted_on_one_replica_resumes_on_the_other(cluster):
    """`Lathe-Upload-Digest` (docs/api.md): parts go straight to the blob's key on S3; a dropped
    connection keeps what arrived, the other replica continues; other bytes never land under it."""
    import hashlib
    a, b = replica_urls(cluster)
    blob = os.urandom(21 << 20)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    start = httpx.post(f"{a}/v2/alice/hello/blobs/uploads/", headers={**auth(cluster.token), "Lathe-Upload-Digest": digest})
    assert start.status_code == 202 and start.headers["lathe-upload-digest"] == digest, start.text
    location = start.headers["location"]

    class Dropped(Exception):
        pass

    def body():
        yield blob[:5 << 20]
        yield blob[5 << 20:11 << 20]
        raise Dropped()

    with pytest.raises(Exception):
        httpx.patch(a + location, content=body(), headers={**auth(cluster.token), "Content-Range": f"0-{len(blob) - 1}"}, timeout=30)
    # What arrived before the drop is kept (the writer's lease lapses within 15 s at most).
    deadline = time.time() + 20
    while True:
        status = httpx.get(b + location, headers=auth(cluster.token))
        assert status.status_code == 204
        kept = int(status.headers["range"].split("-")[1]) + 1
        if kept == 11 << 20 or time.time() > deadline:
            break
        time.sleep(0.5)
    assert kept == 11 << 20, status.headers
    # Out of order: a clear 416 with the upload's range.
    early = httpx.patch(b + location, content=blob[kept + 1:], headers={**auth(cluster.token), "Content-Range": f"{kept + 1}-{len(blob) - 1}"})
    assert early.status_code == 416 and early.headers["range"] == f"0-{kept - 1}", early.text
    for attempt in range(30):
        rest = httpx.patch(b + location, content=blob[kept:], headers={**auth(cluster.token), "Content-Range": f"{kept}-{len(blob) - 1}"})
        if rest.status_code != 409:
            break
        time.sleep(0.5)
    assert rest.status_code == 202, rest.text
    done = httpx.put(b + location, params={"digest": digest}, headers=auth(cluster.token))
    assert done.status_code == 201, done.text
    fetched = httpx.get(f"{a}/v2/alice/hello/blobs/{digest}", headers=auth(cluster.token), follow_redirects=True, timeout=60)
    assert fetched.status_code == 200 and hashlib.sha256(fetched.content).hexdigest() == digest[7:], (fetched.status_code, fetched.text[:300], fetched.history)

    # Other bytes named as a digest: DIGEST_INVALID, and nothing is kept under it.
    promised = "sha256:" + hashlib.sha256(b"promised").hexdigest()
    start = httpx.post(f"{b}/v2/alice/hello/blobs/uploads/", headers={**auth(cluster.token), "Lathe-Upload-Digest": promised})
    location = start.headers["location"]
    other = os.urandom(9 << 20)
    assert httpx.patch(a + location, content=other, headers={**auth(cluster.token), "Content-Range": f"0-{len(other) - 1}"}).status_code == 202
    refused = httpx.put(a + location, params={"digest": promised}, headers=auth(cluster.token))
    assert refused.status_code == 400 and refused.json()["errors"][0]["code"] == "DIGEST_INVALID", refused.text
    assert httpx.head(f"{b}/v2/alice/hello/blobs/{promised}", headers=auth(cluster.token)).status_code == 404
    # And the blob pushed above keeps its bytes when someone names its digest and sends others.
    start = httpx.post(f"{a}/v2/alice/hello/blobs/uploads/", headers={**auth(cluster.token), "Lathe-Upload-Digest": digest})
    location = start.headers["location"]
    assert httpx.patch(a + location, content=other, headers={**auth(cluster.token), "Content-Range": f"0-{len(other) - 1}"}).status_code == 202
    assert httpx.put(b + location, params={"digest": digest}, headers=auth(cluster.token)).status_code == 400
    fetched = httpx.get(f"{b}/v2/alice/hello/blobs/{digest}", headers=auth(cluster.token), follow_redirects=True, timeout=60)
    assert hashlib.sha256(fetched.content).hexdigest() == digest[7:]


def test_a_prediction_is_read_waited_streamed_and_canceled_on_the_other_replica(cluster):
    a, b = replica_urls(cluster)
    created = httpx.post(f"{a}/v1/models/alice/streamer/predictions", json={"input": {"max_words": 8, "delay": 0.25}},
                         headers=auth(cluster.token)).json()
    seen, items, arrived = [], [], {}
    # The signed stream URL any replica honours (the key is in the shared database).
    stream_path = created["urls"]["stream"].split("/v1/", 1)[1]
    with httpx.stream("GET", f"{b}/v1/{stream_path}", timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                seen.append(line[7:])
                arrived.setdefault(seen[-1], time.monotonic())
            elif line.startswith("data: ") and seen[-1] == "output":
                items.append(line[6:])
            if seen and seen[-1] == "done":
                break
    assert seen.count("output") >= 3 and seen[-1] == "done", seen
    # Followed through the event log as A writes it: in pieces (the first word well before the
    # end of a 2 s prediction), each word once and in order.
    assert arrived["done"] - arrived["output"] > 0.8, arrived
    read = httpx.get(f"{b}/v1/predictions/{created['id']}", headers=auth(cluster.token)).json()
    assert read["status"] == "succeeded"
    assert items == read["output"], (items, read["output"])

    # Waiting on B for a prediction that runs on A: B wakes when A finishes (NOTIFY), not after a poll.
    slow = httpx.post(f"{a}/v1/models/alice/streamer/predictions", json={"input": {"max_words": 40, "delay": 0.25}},
                      headers=auth(cluster.token)).json()
    time.sleep(1)
    started = time.time()
    canceled = httpx.post(f"{b}/v1/predictions/{slow['id']}/cancel", headers=auth(cluster.token), timeout=30).json()
    assert canceled["status"] == "canceled", canceled
    assert time.time() - started < 5, "the cancel reached the replica running it and came back"
    assert httpx.get(f"{a}/v1/predictions/{slow['id']}", headers=auth(cluster.token)).json()["status"] == "canceled"


def test_each_replicas_embedded_worker_is_a_member_of_the_one_fleet(cluster):
    """Issue 20, item 2: `lathe serve`'s embedded worker is a row of the shared fleet. Every
    replica lists every embedded worker's hardware, and only the replica it runs inside places on
    it (its commands and files never leave that process)."""
    a, b = replica_urls(cluster)
    for url in (a, b):
        done = httpx.post(f"{url}/v1/models/alice/hello/predictions", json={"input": {"text": url[-5:]}},
                          headers={**auth(cluster.token), "Prefer": "wait"}, timeout=120).json()
        assert done["status"] == "succeeded", done
        assert [entry["sku"] for entry in httpx.get(f"{url}/v1/hardware", headers=auth(cluster.token)).json()] == ["cpu"]
    listing = lathe("admin", "workers", "--data", cluster.data, env=cluster.server_env).stdout
    embedded = re.findall(r"^(w-[0-9a-f-]+)\tembedded in (r-[0-9a-f-]+)\tcpu\t", listing, re.M)
    assert len(embedded) == 2 and len({home for _, home in embedded}) == 2, listing
    # Each instance on an embedded worker was placed by that worker's own replica.
    for worker, home in embedded:
        block = listing.split(worker, 1)[1].split("\nw-", 1)[0]
        assert set(re.findall(r"placed by (r-[0-9a-f-]+)", block)) <= {home}, listing
    assert len(re.findall(r"placed by", listing)) >= 1, listing


def test_revoked_tokens_private_models_and_removed_members_are_refused_everywhere_within_a_second(cluster):
    a, b = replica_urls(cluster)
    made = httpx.post(f"{a}/v1/tokens", json={"label": "short-lived"}, headers=auth(cluster.bob)).json()
    token = made["token"]
    for url in (a, b):  # both replicas have it cached now
        assert httpx.get(f"{url}/v1/account", headers=auth(token)).status_code == 200
    assert httpx.delete(f"{a}/v1/tokens/{made['id']}", headers=auth(cluster.bob)).status_code in (200, 204)
    time.sleep(1)
    assert httpx.get(f"{b}/v1/account", headers=auth(token)).status_code == 401, "revocation reached the other replica"

    assert httpx.patch(f"{a}/v1/models/alice/hello", json={"visibility": "public"}, headers=auth(cluster.token)).status_code == 200
    assert httpx.get(f"{b}/v1/models/alice/hello", headers=auth(cluster.bob)).status_code == 200
    assert httpx.patch(f"{a}/v1/models/alice/hello", json={"visibility": "private"}, headers=auth(cluster.token)).status_code == 200
    time.sleep(1)
    assert httpx.get(f"{b}/v1/models/alice/hello", headers=auth(cluster.bob)).status_code == 404, "private at once on the other replica"

    assert httpx.post(f"{a}/v1/organizations", json={"name": "acme"}, headers=auth(cluster.token)).status_code in (200, 201)
    assert httpx.put(f"{a}/v1/organizations/acme/members/bob", json={"role": "member"}, headers=auth(cluster.token)).status_code in (200, 201, 204)
    assert httpx.get(f"{b}/v1/organizations/acme/members", headers=auth(cluster.bob)).status_code == 200
    assert httpx.delete(f"{a}/v1/organizations/acme/members/bob", headers=auth(cluster.token)).status_code in (200, 204)
    time.sleep(1)
    assert httpx.get(f"{b}/v1/organizations/acme/members", headers=auth(cluster.bob)).status_code == 404


def test_rate_limits_hold_across_replicas(cluster):
    a, b = replica_urls(cluster)
    limited = httpx.post(f"{a}/v1/tokens", json={"label": "limits"}, headers=auth(cluster.bob)).json()["token"]
    statuses = []
    with httpx.Client() as client:
        for index in range(420):
            statuses.append(client.get(f"{(a, b)[index % 2]}/v1/account", headers=auth(limited)).status_code)
    assert statuses.count(200) <= 400 and 429 in statuses, f"{statuses.count(200)} answered of a 400-a-minute budget over two replicas"


def test_a_web_session_made_on_one_works_on_the_other(cluster):
    a, b = replica_urls(cluster)
    client = httpx.Client(follow_redirects=False)
    page = client.get(f"{a}/signup")
    csrf = re.search(r'name="_csrf" value="([0-9a-f]+)"', page.text).group(1)
    assert client.post(f"{a}/signup", data={"_csrf": csrf, "username": "wendy", "password": "correct horse battery"}).status_code == 303
    account = client.get(f"{b}/account")
    assert account.status_code == 200 and "wendy" in account.text
    token = re.search(r'name="_csrf" value="([0-9a-f]+)"', account.text).group(1)
    assert client.post(f"{b}/account/tokens", data={"_csrf": token, "label": "from b"}).status_code in (200, 303)


def test_sign_in_attempts_are_counted_across_replicas(cluster):
    """A guesser whose attempts the load balancer spreads over both replicas still gets 10 a minute."""
    statuses = []
    for index in range(11):
        url = replica_urls(cluster)[index % 2]
        client = httpx.Client(follow_redirects=False, timeout=30)  # failures add a growing delay (up to 5 s)
        csrf = re.search(r'name="_csrf" value="([0-9a-f]+)"', client.get(f"{url}/signin").text).group(1)
        statuses.append(client.post(f"{url}/signin", data={"_csrf": csrf, "username": "alice", "password": f"guess{index}"}).status_code)
    assert statuses == [401] * 10 + [429], statuses


def test_webhooks_are_delivered_once_and_singletons_run_on_one_replica(cluster):
    with WebhookReceiver() as receiver:
        ids = []
        for _ in range(6):
            ids.append(httpx.post(f"{cluster.url}/v1/models/alice/hello/predictions", json={
                "input": {"text": "hook"}, "webhook": f"{receiver.url}/hook",
                "webhook_events_filter": ["completed"]}, headers={**auth(cluster.token), "Prefer": "wait"}).json()["id"])
        time.sleep(3)
        completed = [json.loads(body)["id"] for _, body in receiver.received if json.loads(body)["status"] == "succeeded"]
        assert sorted(completed) == sorted(ids), f"each completed event once: {completed}"
    leaders = [path for _, path, _ in cluster.replicas if "runs the singletons (leader)" in open(path).read()]
    assert len(leaders) == 1, f"exactly one leader: {leaders}"


def test_kill9_of_a_replica_during_a_burst_loses_no_prediction(cluster):
    """300 predictions through nginx; one replica is SIGKILLed midway. Every created prediction ends
    succeeded, failed or canceled within a minute: the other replica requeues the dead one's claims
    when their leases run out."""
    created = []
    lock = threading.Lock()

    def create(index):
        try:
            answer = httpx.post(f"{cluster.url}/v1/models/alice/hello/predictions", json={"input": {"text": f"n{index}"}},
                                headers=auth(cluster.token), timeout=30)
            if answer.status_code == 201:
                with lock:
                    created.append(answer.json()["id"])
        except httpx.HTTPError:
            pass  # refused while the replica died: never created, nothing to lose

    victim = cluster.replicas[1][0]
    # A prediction that has produced output on the victim cannot run again: once its lease runs
    # out it fails, and the surviving leader sends its `completed` webhook.
    receiver = WebhookReceiver()
    doomed = httpx.post(f"{replica_urls(cluster)[1]}/v1/models/alice/streamer/predictions",
                        json={"input": {"max_words": 400, "delay": 0.25}, "webhook": f"{receiver.url}/hook",
                              "webhook_events_filter": ["completed"]}, headers=auth(cluster.token)).json()["id"]
    deadline = time.time() + 30
    while not httpx.get(f"{cluster.url}/v1/predictions/{doomed}", headers=auth(cluster.token)).json().get("output"):
        assert time.time() < deadline, "the streamer never produced output"
        time.sleep(0.2)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(create, index) for index in range(300)]
        while len(created) < 100:
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        for future in futures:
            future.result()
    assert len(created) >= 250, f"only {len(created)} of 300 were created"
    survivor = replica_urls(cluster)[0]
    deadline = time.time() + 60
    pending = set(created)
    while pending and time.time() < deadline:
        for identifier in list(pending)[:100]:
            status = httpx.get(f"{survivor}/v1/predictions/{identifier}", headers=auth(cluster.token)).json()["status"]
            if status in ("succeeded", "failed", "canceled"):
                pending.discard(identifier)
        time.sleep(1)
    assert not pending, f"{len(pending)} predictions never finished after the replica died:\n" + cluster.log()[-3000:]
    deadline = time.time() + 45
    while not any(json.loads(body)["id"] == doomed for _, body in receiver.received) and time.time() < deadline:
        time.sleep(0.5)
    receiver.server.shutdown()
    hooks = [json.loads(body) for _, body in receiver.received if json.loads(body)["id"] == doomed]
    assert len(hooks) == 1 and hooks[0]["status"] == "failed" and "lost" in hooks[0]["error"], hooks
    # Bring the replica back for any test after this one.
    process, path, url = cluster.start_replica(1, ["--idle-timeout", "60", "--allow-outbound", "127.0.0.2/32", "--rate-limit-requests", "400",
                                                   "--base-url", cluster.url], runtime=True, port=int(replica_urls(cluster)[1].rsplit(":", 1)[1]))
    cluster.replicas[1] = (process, path, url)


@pytest.mark.skipif(not os.environ.get("LATHE_TEST_POSTGRES_DIR"), reason="needs the cluster's folder to stop and resume it (scripts/test sets it)")
def test_restarting_postgresql_gives_503_then_recovers(cluster):
    import subprocess
    folder = os.environ["LATHE_TEST_POSTGRES_DIR"]
    before = httpx.get(f"{cluster.url}/v1/predictions", headers=auth(cluster.token))
    assert before.status_code == 200
    subprocess.run([os.path.join(ROOT, "scripts", "postgres"), "stop", folder], check=True)
    try:
        answers = []
        for _ in range(5):
            answer = httpx.post(f"{cluster.url}/v1/models/alice/hello/predictions", json={"input": {"text": "down"}},
                                headers=auth(cluster.token), timeout=30)
            answers.append(answer)
        assert all(answer.status_code == 503 for answer in answers), [a.status_code for a in answers]
        assert "database is unavailable" in answers[0].json()["detail"]
    finally:
        subprocess.run([os.path.join(ROOT, "scripts", "postgres"), "resume", folder], check=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        answer = httpx.post(f"{cluster.url}/v1/models/alice/hello/predictions", json={"input": {"text": "back"}},
                            headers={**auth(cluster.token), "Prefer": "wait"}, timeout=60)
        if answer.status_code == 201 and answer.json()["status"] == "succeeded":
            break
        time.sleep(1)
    assert answer.status_code == 201 and answer.json()["output"] == "Hello, back!", answer.text
    # Nothing half-written: every prediction listed is a whole row, none stuck half-way.
    listed = httpx.get(f"{cluster.url}/v1/predictions", headers=auth(cluster.token)).json()["results"]
    assert all(item["status"] in ("starting", "processing", "succeeded", "failed", "canceled") and item["version"] for item in listed)
