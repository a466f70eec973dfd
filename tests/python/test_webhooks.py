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
