"""Issue 23 (the everyday path): what a newcomer copies from the model page runs as printed."""
import html
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
