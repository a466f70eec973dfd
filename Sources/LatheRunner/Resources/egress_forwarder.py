"""Runs inside an environment build's sandbox, which has a network namespace of its own with only
loopback: listens on 127.0.0.1, points HTTP(S)_PROXY at that port, runs the installer, and
carries each connection to Lathe's build proxy over the Unix socket bound into the sandbox. The
proxy outside decides where a connection may go; this only moves bytes.

usage: python3 egress_forwarder.py SOCKET -- COMMAND ARG..."""
import os
import socket
import sys
import threading


def pipe(source, target):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def carry(client, path):
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        client.close()
        return
    back = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
    back.start()
    pipe(client, upstream)
    back.join()
    client.close()
    upstream.close()


def main():
    path, separator, command = sys.argv[1], sys.argv[2], sys.argv[3:]
    assert separator == "--" and command, __doc__
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    proxy = "http://127.0.0.1:%d" % listener.getsockname()[1]
    environment = dict(os.environ)
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        environment[key] = proxy
    environment.pop("NO_PROXY", None)
    environment.pop("no_proxy", None)
    child = os.fork()
    if child == 0:
        listener.close()
        os.execvpe(command[0], command, environment)

    def serve():
        while True:
            client, _ = listener.accept()
            threading.Thread(target=carry, args=(client, path), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
