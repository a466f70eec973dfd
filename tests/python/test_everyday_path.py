"""Issue 23 (the everyday path): what a newcomer copies from the model page runs as printed."""
import html
import json
import os
import re
import subprocess
import sys

import httpx


def snippets(page_text):
    return [html.unescape(code) for code in re.findall(r"<pre><code>(.*?)</code></pre>", page_text, re.S)]


def test_the_model_page_s_api_snippets_run_as_printed_and_name_owner_and_name(server):
    page = httpx.get(f"{server.url}/alice/hello", headers={"Authorization": f"Bearer {server.token}"}).text
    curl = next(code for code in snippets(page) if code.startswith("curl"))
    python = next(code for code in snippets(page) if code.startswith("import replicate"))
    assert "/v1/models/alice/hello/predictions" in curl and 'replicate.run("alice/hello"' in python, (curl, python)
    assert f"alice/hello:{server.versions['hello']}" in page, "the pinned version stays one look away"
    env = dict(os.environ, REPLICATE_API_TOKEN=server.token, REPLICATE_BASE_URL=server.url)
    ran = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode == 0 and '"status":"succeeded"' in ran.stdout.replace(" ", ""), ran.stdout + ran.stderr
    ran = subprocess.run([sys.executable, "-c", python + "\nprint(output)"], capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode == 0 and "Hello" in ran.stdout, ran.stdout + ran.stderr


def test_a_push_to_someone_else_s_namespace_is_denied_with_a_sentence_that_reveals_no_private_model(server, tmp_path):
    bob = {"Authorization": f"Bearer {server.bob}"}
    private = httpx.get(f"{server.url}/v1/models/alice/hello", headers=bob)
    assert private.status_code == 404, "alice/hello is private: bob cannot see it"
    answers = {}
    for name in ["hello", "no-such-model"]:
        started = httpx.post(f"{server.url}/v2/alice/{name}/blobs/uploads/", headers=bob)
        answers[name] = (started.status_code, json.loads(started.text.replace(name, "NAME")))
    # The same answer whether or not a (private) model sits there: the namespace decides.
    assert answers["hello"] == answers["no-such-model"], answers
    status, body = answers["hello"][0], json.loads(json.dumps(answers["hello"][1]).replace("NAME", "hello"))
    assert status == 403 and body["errors"][0]["code"] == "DENIED", answers
    assert body["errors"][0]["message"] == ("bob may not push to alice/hello: only alice may push to the alice namespace; "
                                            "push to bob/hello instead"), body

    env = dict(server.env, LATHE_TOKEN=server.bob)
    pushed = subprocess.run([os.environ.get("LATHE_BIN", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "debug", "lathe")),
                             "push", os.path.join(os.path.dirname(__file__), "..", "..", "samples", "hello"), "alice/hello"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert pushed.returncode != 0 and "bob may not push to alice/hello" in pushed.stderr and "error: error:" not in pushed.stderr, pushed.stderr
    assert "NAME_UNKNOWN" not in pushed.stderr and "does not exist" not in pushed.stderr, pushed.stderr

    nobody = httpx.post(f"{server.url}/v2/nobody-here/x/blobs/uploads/", headers=bob)
    assert nobody.status_code == 404 and "there is no user or organization named nobody-here" in nobody.json()["errors"][0]["message"], nobody.text


def test_a_push_updates_the_readme_until_it_is_edited_on_the_web_and_the_page_leads_with_it(server, tmp_path):
    import shutil
    project = tmp_path / "readme-flow"
    shutil.copytree(os.path.join(os.path.dirname(__file__), "..", "..", "samples", "hello"), project)
    lathe_bin = os.environ.get("LATHE_BIN", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "debug", "lathe"))
    headers = {"Authorization": f"Bearer {server.token}"}

    def push(readme):
        (project / "README.md").write_text(readme)
        pushed = subprocess.run([lathe_bin, "push", str(project), "alice/readme-flow"], capture_output=True, text=True, env=server.env, timeout=120)
        assert pushed.returncode == 0, pushed.stderr
        return pushed.stderr, httpx.get(f"{server.url}/v1/models/alice/readme-flow/readme", headers=headers).text

    said, readme = push("# First\n\nThe first words.\n")
    assert readme == "# First\n\nThe first words.\n" and "README.md is now the readme of alice/readme-flow" in said, said
    said, readme = push("# Second\n\nBetter words.\n")
    assert readme == "# Second\n\nBetter words.\n" and "README.md updated the readme" in said, said
    said, _ = push("# Second\n\nBetter words.\n")
    assert "README" not in said and "the readme" not in said, "an unchanged README.md says nothing: " + said

    # The page leads with the readme: it comes before the run form.
    page = httpx.get(f"{server.url}/alice/readme-flow", headers=headers).text
    assert page.index("Better words.") < page.index('id="run-heading"'), page

    # Edited by hand (PATCH, as the settings page does), it is kept over a later push, which says so.
    assert httpx.patch(f"{server.url}/v1/models/alice/readme-flow", json={"readme": "# Mine\n"}, headers=headers).status_code == 200
    said, readme = push("# Third\n")
    assert readme == "# Mine\n" and "was edited on its settings page and is kept" in said, said
    # A settings save that leaves the readme as it was does not count as an edit of it; clearing it
    # lets pushes set it again.
    assert httpx.patch(f"{server.url}/v1/models/alice/readme-flow", json={"readme": ""}, headers=headers).status_code == 200
    said, readme = push("# Fourth\n")
    assert readme == "# Fourth\n" and "is now the readme" in said, said
    assert httpx.patch(f"{server.url}/v1/models/alice/readme-flow", json={"description": "d"}, headers=headers).status_code == 200
    said, readme = push("# Fifth\n")
    assert readme == "# Fifth\n" and "updated" in said, said
    # Someone who may not write the model may not set its readme.
    refused = httpx.put(f"{server.url}/v1/models/alice/readme-flow/readme", json={"readme": "x"}, headers={"Authorization": f"Bearer {server.bob}"})
    assert refused.status_code in (403, 404), refused.text


def test_prefer_wait_that_runs_out_answers_the_real_status_and_official_clients_still_poll(server):
    headers = {"Authorization": f"Bearer {server.token}"}
    url = f"{server.url}/v1/models/alice/streamer/predictions"
    warm = httpx.post(url, json={"input": {"max_words": 1}}, headers={**headers, "Prefer": "wait"}, timeout=90)
    assert warm.json()["status"] == "succeeded", warm.text
    slow = {"input": {"max_words": 20, "delay": 0.2}}
    answered = httpx.post(url, json=slow, headers={**headers, "Prefer": "wait=1"}, timeout=30).json()
    assert answered["status"] == "processing", answered
    # Replicate's official clients treat anything but "starting" as finished, as Replicate answers them.
    official = httpx.post(url, json=slow, headers={**headers, "Prefer": "wait=1", "User-Agent": "replicate-python/1.0.7"}, timeout=30).json()
    assert official["status"] == "starting", official
    import replicate
    client = replicate.Client(api_token=server.token, base_url=server.url)
    text = "".join(client.run("alice/streamer", input={"max_words": 8, "delay": 0.2}, wait=1))
    whole = httpx.post(url, json={"input": {"max_words": 8, "delay": 0.2}}, headers={**headers, "Prefer": "wait"}, timeout=60).json()
    assert whole["status"] == "succeeded" and text == "".join(whole["output"]), (text, whole)


def test_what_setup_printed_opens_the_first_prediction_s_logs(server, tmp_path):
    project = tmp_path / "loud-setup"
    project.mkdir()
    (project / "lathe.yaml").write_text('python: "3.11"\npredict: predict.py:Predictor\ninputs:\n  text: {type: string}\noutput: {type: string}\n')
    (project / "predict.py").write_text("class Predictor:\n    def setup(self):\n        print('loading the weights once', flush=True)\n\n"
                                        "    def predict(self, text: str) -> str:\n        print('predicting', text, flush=True)\n        return text\n")
    lathe_bin = os.environ.get("LATHE_BIN", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "debug", "lathe"))
    pushed = subprocess.run([lathe_bin, "push", str(project), "alice/loud-setup"], capture_output=True, text=True, env=server.env, timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    headers = {"Authorization": f"Bearer {server.token}", "Prefer": "wait"}
    url = f"{server.url}/v1/models/alice/loud-setup/predictions"
    first = httpx.post(url, json={"input": {"text": "one"}}, headers=headers, timeout=120).json()
    # (A remote worker's boot adds how it fetched the version before.)
    assert first["status"] == "succeeded" and first["logs"].endswith("loading the weights once\npredicting one\n"), first
    second = httpx.post(url, json={"input": {"text": "two"}}, headers=headers, timeout=120).json()
    assert second["logs"] == "predicting two\n", second


def test_a_failing_prediction_s_traceback_starts_at_the_model_s_frames_without_host_paths(server, tmp_path):
    project = tmp_path / "raises"
    project.mkdir()
    (project / "lathe.yaml").write_text('python: "3.11"\npredict: predict.py:Predictor\ninputs:\n  text: {type: string}\noutput: {type: string}\n')
    (project / "helpers.py").write_text("def check(text):\n    raise ValueError(f'cannot use {text!r}')\n")
    (project / "predict.py").write_text("from helpers import check\n\nclass Predictor:\n    def predict(self, text: str) -> str:\n        check(text)\n        return text\n")
    lathe_bin = os.environ.get("LATHE_BIN", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "debug", "lathe"))
    pushed = subprocess.run([lathe_bin, "push", str(project), "alice/raises"], capture_output=True, text=True, env=server.env, timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    failed = httpx.post(f"{server.url}/v1/models/alice/raises/predictions", json={"input": {"text": "x"}},
                        headers={"Authorization": f"Bearer {server.token}", "Prefer": "wait"}, timeout=120).json()
    assert failed["status"] == "failed" and failed["error"] == "cannot use 'x'", failed
    logs = failed["logs"]
    assert "Traceback (most recent call last):" in logs and 'predict.py", line 5, in predict' in logs and 'helpers.py", line 2, in check' in logs, logs
    assert "runner.py" not in logs, "the runner's own frames are not the author's business: " + logs
    for host in [server.scratch, os.path.expanduser("~"), os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))]:
        assert host not in logs, f"a host path ({host}) in the logs: {logs}"
