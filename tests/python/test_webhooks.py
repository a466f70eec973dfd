"""Durable webhooks (issue 20 item 4): deliveries are rows any replica sends and retries, so a
receiver that is down when the prediction ends still gets its `completed` event after the
server restarts, under the webhook-id it had."""
import http.server
import json
import signal
import socket
import threading
import time

import httpx

from conftest import Server


def free_port(host):
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class Receiver:
    """Records POSTs on 127.0.0.2:port as (webhook-id, status); answers 200."""

    def __init__(self, port):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])).decode())
                received.append((self.headers["webhook-id"], body["status"], body["id"]))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.2", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_completed_webhook_whose_receiver_is_down_arrives_after_the_server_restarts():
    server = Server("--allow-outbound", "127.0.0.2/32", samples=("hello",))
    port = free_port("127.0.0.2")
    receiver = None
    try:
        headers = {"Authorization": f"Bearer {server.token}"}
        created = httpx.post(f"{server.url}/v1/models/alice/hello/predictions", headers={**headers, "Prefer": "wait"}, timeout=60,
                             json={"input": {"text": "later"}, "webhook": f"http://127.0.0.2:{port}/hook",
                                   "webhook_events_filter": ["completed"]}).json()
        deadline = time.time() + 30
        while httpx.get(f"{server.url}/v1/predictions/{created['id']}", headers=headers).json()["status"] != "succeeded":
            assert time.time() < deadline
            time.sleep(0.2)
        time.sleep(2)  # the first attempts fail: nobody listens
        process, _, url = server.replicas[0]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        receiver = Receiver(port)
        time.sleep(1)
        assert receiver.received == [], "nothing is sent while the server is down"
        server.replicas[0] = server.start_replica(0, ["--allow-outbound", "127.0.0.2/32"], port=int(url.rsplit(":", 1)[1]))
        deadline = time.time() + 30
        while not receiver.received and time.time() < deadline:
            time.sleep(0.2)
        assert receiver.received == [(f"msg_{created['id']}_completed", "succeeded", created["id"])], receiver.received
        time.sleep(2)
        assert len(receiver.received) == 1, "delivered once: " + str(receiver.received)
    finally:
        if receiver:
            receiver.close()
        server.stop()


def push(server, tmp_path, name, spec, code):
    import os
    import subprocess
    from conftest import LATHE
    project = tmp_path / name
    project.mkdir()
    (project / "lathe.yaml").write_text(spec)
    (project / "predict.py").write_text(code)
    pushed = subprocess.run([LATHE, "push", str(project), f"alice/{name}"], capture_output=True, text=True, env=server.env, timeout=120)
    assert pushed.returncode == 0, pushed.stderr


SLEEPER_SPEC = 'python: "3.11"\npredict: predict.py:Predictor\ntimeout: 8s\ninputs:\n  seconds: {type: number}\noutput: {type: string}\n'
SLEEPER = "import time\nclass Predictor:\n    def predict(self, seconds: float) -> str:\n        if seconds < 0:\n            raise ValueError('negative')\n        time.sleep(seconds)\n        return 'slept'\n"
BROKEN = "class Predictor:\n    def setup(self):\n        raise RuntimeError('the weights are missing')\n\n    def predict(self, seconds: float) -> str:\n        return 'never'\n"


def test_every_ending_sends_exactly_one_completed_webhook_with_the_status_a_get_shows(tmp_path):
    server = Server("--allow-outbound", "127.0.0.2/32", samples=())
    receiver = Receiver(free_port("127.0.0.2"))
    try:
        push(server, tmp_path, "sleeper", SLEEPER_SPEC, SLEEPER)
        push(server, tmp_path, "broken", SLEEPER_SPEC, BROKEN)
        push(server, tmp_path, "slow-boot", SLEEPER_SPEC, "import time\nclass Predictor:\n    def setup(self):\n        time.sleep(20)\n\n"
                                                         "    def predict(self, seconds: float) -> str:\n        return 'late'\n")
        headers = {"Authorization": f"Bearer {server.token}"}
        hook = f"http://127.0.0.2:{receiver.server.server_address[1]}/hook"

        def create(model, seconds, extra=None):
            answer = httpx.post(f"{server.url}/v1/models/alice/{model}/predictions", headers={**headers, **(extra or {})}, timeout=60,
                                json={"input": {"seconds": seconds}, "webhook": hook, "webhook_events_filter": ["completed"]})
            assert answer.status_code == 201, answer.text
            return answer.json()["id"]

        expected = {}
        expected[create("sleeper", 0)] = "succeeded"
        expected[create("sleeper", -1)] = "failed"           # predict() raises
        expected[create("sleeper", 30)] = "failed"           # past the model's 8 s timeout
        expected[create("sleeper", 30, {"Cancel-After": "5s"})] = "canceled"
        for _ in range(3):
            expected[create("broken", 0)] = "failed"         # setup() raises: the booting one and those behind it
        running = create("sleeper", 30)
        deadline = time.time() + 30
        while httpx.get(f"{server.url}/v1/predictions/{running}", headers=headers).json()["status"] != "processing":
            assert time.time() < deadline, "the prediction to cancel never ran"
            time.sleep(0.1)
        queued = create("slow-boot", 0)                      # waits while its instance boots
        time.sleep(0.5)
        for prediction in (running, queued):
            assert httpx.post(f"{server.url}/v1/predictions/{prediction}/cancel", headers=headers, timeout=30).status_code == 200
            expected[prediction] = "canceled"
        deadline = time.time() + 60
        while len({id for _, _, id in receiver.received}) < len(expected) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # nothing more arrives
        seen = {}
        for message, status, prediction in receiver.received:
            assert prediction not in seen, f"a second completed webhook for {prediction}: {receiver.received}"
            seen[prediction] = status
            assert message == f"msg_{prediction}_completed"
        for prediction, status in expected.items():
            got = httpx.get(f"{server.url}/v1/predictions/{prediction}", headers=headers).json()
            assert got["status"] == status and seen.get(prediction) == status, (prediction, status, got["status"], seen.get(prediction), got.get("error"))
    finally:
        receiver.close()
        server.stop()
