"""One fleet shared by every replica (issue 20, item 1): two API-only replicas (`--no-worker`) on one
PostgreSQL behind nginx (deploy/nginx.conf), and two `lathe worker`s given only nginx's address.
Register, heartbeats, long polls and reports land on whichever replica nginx picks; reports about an
instance reach the replica that placed it. Runs only on PostgreSQL (scripts/test sets
LATHE_TEST_POSTGRES)."""
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import POSTGRES, Server, Worker, lathe

pytestmark = pytest.mark.skipif(not POSTGRES, reason="replicas need PostgreSQL (set LATHE_TEST_POSTGRES, as scripts/test does)")

SERVE = ["--no-worker", "--idle-timeout", "120", "--rate-limit-requests", "2000", "--worker-lost-after", "6"]


def auth(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def fleet():
    running = Server(*SERVE, samples=("hello",), replicas=2)
    for name in ("w1", "w2"):
        worker = Worker(running, name, "--max-instances", "2")
        assert worker.registry == running.url and running.url.endswith(str(running.front_port)), "workers know only nginx"
    yield running
    running.stop()


def replica_urls(cluster):
    return [url for _, _, url in cluster.replicas]


def predict(url, token, text, wait=60):
    answer = httpx.post(f"{url}/v1/models/alice/hello/predictions", json={"input": {"text": text}},
                        headers={**auth(token), "Prefer": f"wait={wait}"}, timeout=wait + 30)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def wait_done(url, token, ids, seconds):
    deadline = time.time() + seconds
    done = {}
    while len(done) < len(ids) and time.time() < deadline:
        for identifier in [i for i in ids if i not in done]:
            try:
                body = httpx.get(f"{url}/v1/predictions/{identifier}", headers=auth(token), timeout=10).json()
            except httpx.HTTPError:
                continue
            if body["status"] in ("succeeded", "failed", "canceled"):
                done[identifier] = body
        time.sleep(0.5)
    return done


def test_every_replica_sees_the_whole_fleet_and_runs_predictions_on_it(fleet):
    for url in replica_urls(fleet):
        # API-only replicas: what they offer is the workers' hardware, registered through nginx.
        hardware = httpx.get(f"{url}/v1/hardware", headers=auth(fleet.token)).json()
        assert [entry["sku"] for entry in hardware] == ["cpu"], hardware
        results = [predict(url, fleet.token, f"{url[-5:]}-{index}") for index in range(6)]
        assert [r["status"] for r in results] == ["succeeded"] * 6, [r for r in results if r["status"] != "succeeded"][:2]
        assert all(r["output"].startswith("Hello, ") for r in results)
    # Both replicas placed instances on the workers: each worker's reports (boot, events,
    # completion) reached the replica that placed the instance, whichever replica nginx gave them to.
    logs = "".join(open(path).read() for _, path, _ in fleet.replicas)
    assert "instance ready" in open(fleet.replicas[0][1]).read() and "instance ready" in open(fleet.replicas[1][1]).read(), logs[-3000:]
    assert sum(worker.instances() for worker in fleet.workers) >= 2, [w.log()[-1500:] for w in fleet.workers]
    # The operator sees the shared fleet from the store: both workers, their slots, and which
    # replica placed each instance.
    listing = lathe("admin", "workers", "--data", fleet.data, env=fleet.server_env).stdout
    assert all(f"\t{name}\tcpu\t" in listing for name in ("w1", "w2")), listing
    assert "of 2 instance(s)" in listing and len(set(re.findall(r"placed by (r-[0-9a-f-]+)", listing))) == 2, listing


def test_kill9_of_a_replica_during_a_burst_leaves_every_prediction_succeeded_and_the_workers_carry_on(fleet):
    created = []
    lock = threading.Lock()

    def create(index):
        for _ in range(3):
            try:
                answer = httpx.post(f"{fleet.url}/v1/models/alice/hello/predictions", json={"input": {"text": f"burst{index}"}},
                                    headers=auth(fleet.token), timeout=30)
            except httpx.HTTPError:
                continue  # the connection died with the replica: never created, sent again
            if answer.status_code == 201:
                with lock:
                    created.append(answer.json()["id"])
                return
    victim = fleet.replicas[1][0]
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(create, index) for index in range(30)]
        while len(created) < 10:
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        for future in futures:
            future.result()
    assert len(created) == 30, f"{len(created)} of 30 were created"
    survivor = replica_urls(fleet)[0]
    # The dead replica's claims are requeued when their leases run out (30 s).
    done = wait_done(survivor, fleet.token, created, 120)
    statuses = {identifier: body["status"] for identifier, body in done.items()}
    stuck = [httpx.get(f"{survivor}/v1/predictions/{i}", headers=auth(fleet.token)).json() for i in created if i not in done]
    assert len(done) == 30 and set(statuses.values()) == {"succeeded"}, (
        f"{len(done)} of 30 ended: {[b for b in done.values() if b['status'] != 'succeeded'][:2]}\nstuck: {stuck}\n"
        + fleet.log()[-3000:] + "".join(w.log()[-2000:] for w in fleet.workers))
    # The workers carried on through the surviving replica: still the same processes, and they
    # answer new predictions.
    assert all(worker.process.poll() is None for worker in fleet.workers)
    assert all(worker.registrations() == 1 for worker in fleet.workers), [w.log()[-1500:] for w in fleet.workers]
    results = [predict(fleet.url, fleet.token, f"after{index}") for index in range(4)]
    assert [r["status"] for r in results] == ["succeeded"] * 4, results


def test_a_replica_finds_room_on_a_worker_another_replica_filled_with_idle_instances():
    """Each replica runs only the instances it placed. When one replica's idle instances fill a
    worker, another replica with work asks for room and the first stops one (before, the work
    waited for the idle timeout: two minutes here)."""
    cluster = Server(*SERVE, samples=("hello",), replicas=2)
    try:
        Worker(cluster, "solo", "--max-instances", "1")
        first, second = replica_urls(cluster)
        assert predict(first, cluster.token, "fill")["status"] == "succeeded"
        assert cluster.workers[0].instances() == 1, cluster.workers[0].log()[-1500:]
        time.sleep(1.5)  # the first replica's instance is idle now, and fills the worker
        started = time.time()
        answer = predict(second, cluster.token, "room", wait=40)
        assert answer["status"] == "succeeded", answer
        assert time.time() - started < 20, f"took {time.time() - started:.1f} s"
    finally:
        cluster.stop()
