"""Issue 23, item 1: operators manage users without SQL, with the server running, on SQLite and
PostgreSQL (the PostgreSQL pass of scripts/test runs this file again)."""
import re
import subprocess
import time

import httpx

from conftest import LATHE, Server, lathe


def admin(server, *args, stdin=None, check=True):
    result = subprocess.run([LATHE, "admin", "user", *args, "--data", server.data], input=stdin, capture_output=True, text=True,
                            env=server.server_env)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def sign_in(server, username, password):
    client = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    page = client.get("/signin")
    csrf = re.search(r'name="_csrf" value="([0-9a-f]+)"', page.text).group(1)
    answer = client.post("/signin", data={"_csrf": csrf, "username": username, "password": password, "next": "/account"})
    return client, answer


def until(check, seconds=5):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_operators_list_set_passwords_disable_enable_delete_and_promote_users():
    server = Server(samples=("hello",))
    try:
        # The README's quick start: a user created with a password signs in on the web.
        admin(server, "create", "carol", "--password-stdin", stdin="correct horse battery\n")
        client, answer = sign_in(server, "carol", "correct horse battery")
        assert answer.status_code == 303, answer.text[:300]
        assert client.get("/account").status_code == 200
        # alice was created without a password: set one, with the server running.
        assert sign_in(server, "alice", "a new password")[1].status_code != 303
        short = admin(server, "set-password", "alice", stdin="short\n", check=False)
        assert short.returncode != 0 and "shorter than 8" in short.stderr
        admin(server, "set-password", "alice", stdin="a new password\n")
        alice_web, answer = sign_in(server, "alice", "a new password")
        assert answer.status_code == 303
        listed = admin(server, "list").stdout
        assert re.search(r"alice\tuser, password set\t1 model\t1 token", listed), listed
        assert re.search(r"carol\tuser, password set\t0 models\t0 tokens", listed), listed

        # Disabled: the token and the web session stop working at once; enabled: the token works again.
        token = {"Authorization": f"Bearer {server.token}"}
        assert httpx.get(f"{server.url}/v1/account", headers=token).status_code == 200  # cached by the server now
        admin(server, "disable", "alice")
        assert until(lambda: httpx.get(f"{server.url}/v1/account", headers=token).status_code == 401, 5), "the token stops within a second or so (5 s allowed on a loaded machine)"
        assert alice_web.get("/account").status_code in (302, 303), "the session ended"
        assert sign_in(server, "alice", "a new password")[1].status_code != 303, "a disabled user cannot sign in"
        assert "disabled since" in admin(server, "list").stdout
        admin(server, "enable", "alice")
        assert until(lambda: httpx.get(f"{server.url}/v1/account", headers=token).status_code == 200, 5)

        # Operators.
        admin(server, "admin", "carol")
        assert "carol\toperator" in admin(server, "list").stdout
        admin(server, "unadmin", "carol")
        assert "carol\tuser" in admin(server, "list").stdout

        # Delete: refused while the user owns models, with a sentence; done once they own none.
        refused = admin(server, "delete", "alice", check=False)
        assert refused.returncode != 0 and "owns 1 model" in refused.stderr, refused.stderr
        admin(server, "delete", "carol")
        assert "carol" not in admin(server, "list").stdout
        assert sign_in(server, "carol", "correct horse battery")[1].status_code != 303
        unknown = admin(server, "disable", "nobody", check=False)
        assert unknown.returncode != 0 and "no user named nobody" in unknown.stderr
    finally:
        server.stop()
