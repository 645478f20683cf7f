"""Probe a guarded Docker API socket from a task's position: every call an
attacker in that task would try, sent raw (so malformed requests reach the
guard as written), each expected to be refused; then the reads the task's
job needs, expected to pass.

Usage: guard_probe.py SOCKET POLICY [--secret TEXT]...

POLICY is the socket's policy (`discovery`). A `--secret` is a value that
must appear in no answer (a user's token in a service's environment).
Prints one line a call and `N refused, N passed, N failed`; exits non-zero
on a failure. Makes nothing when the guard holds: every call that would
make something names `hgprobe-*` so the test can look for it afterwards.
"""

import json
import socket
import sys

# A container that would own the node: privileged, with / bound in.
ROOT_CONTAINER = {"Image": "x", "HostConfig": {"Privileged": True, "Binds": ["/:/host"]}}
BIND_SERVICE = {
    "Name": "hgprobe-svc",
    "TaskTemplate": {
        "ContainerSpec": {
            "Image": "x",
            "Mounts": [{"Type": "bind", "Source": "/var/run/docker.sock", "Target": "/s"}],
        }
    },
}
BIND_VOLUME = {"Name": "hgprobe-v", "DriverOpts": {"type": "none", "o": "bind", "device": "/"}}
# A body of `{}` in chunks.
CHUNKED = b"2\r\n{}\r\n0\r\n\r\n"
# The same spec hiding the bind under a key that differs only in case.
CASE_TRICK = (
    '{"Name": "hgprobe-case", "TaskTemplate": {"ContainerSpec": {"Image": "x", '
    '"Mounts": [], "mounts": [{"Type": "bind", "Source": "/", "Target": "/h"}]}}}'
)


def request(method, target, body=None, headers=()):
    """A raw HTTP/1.1 request; a JSON body given as a dict or as text."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    lines = [f"{method} {target} HTTP/1.1", "Host: docker", "Connection: close", *headers]
    data = b""
    if body is not None:
        data = body.encode()
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def attacks():
    """(what, raw request) an attacker would send; each must be refused."""
    v = "/v1.41"
    create = f"{v}/containers/create"
    length, chunked = "Content-Length: 2", "Transfer-Encoding: chunked"
    return [
        ("create a privileged container binding /", request("POST", f"{create}?name=hgprobe-c", ROOT_CONTAINER)),
        ("create a service binding the Docker socket", request("POST", f"{v}/services/create", BIND_SERVICE)),
        ("a spec with Mounts and mounts", request("POST", f"{v}/services/create", CASE_TRICK)),
        ("update a service", request("POST", f"{v}/services/x/update?version=1", {"Name": "x"})),
        ("remove a service", request("DELETE", f"{v}/services/x")),
        ("exec into a container", request("POST", f"{v}/containers/x/exec", {"Cmd": ["sh"]})),
        ("list containers", request("GET", f"{v}/containers/json?all=1")),
        ("read a container's files", request("GET", f"{v}/containers/x/archive?path=/srv")),
        ("read a container's logs", request("GET", f"{v}/containers/x/logs?stdout=1")),
        ("list secrets", request("GET", f"{v}/secrets")),
        ("create a secret", request("POST", f"{v}/secrets/create", {"Name": "hgprobe-s", "Data": "eA=="})),
        ("read a config", request("GET", f"{v}/configs/x")),
        ("create a config", request("POST", f"{v}/configs/create", {"Name": "hgprobe-cf", "Data": "eA=="})),
        ("read the swarm (join tokens)", request("GET", f"{v}/swarm")),
        ("leave the swarm", request("POST", f"{v}/swarm/leave?force=1")),
        ("update the swarm", request("POST", f"{v}/swarm/update?version=1", {})),
        ("list nodes", request("GET", f"{v}/nodes")),
        ("demote a node", request("POST", f"{v}/nodes/x/update?version=1", {"Role": "worker"})),
        ("pull a plugin", request("POST", f"{v}/plugins/pull?remote=x", [])),
        ("pull an image", request("POST", f"{v}/images/create?fromImage=x")),
        ("load an image", request("POST", f"{v}/images/load", "not json")),
        ("create a volume binding /", request("POST", f"{v}/volumes/create", BIND_VOLUME)),
        ("list volumes", request("GET", f"{v}/volumes")),
        ("list images", request("GET", f"{v}/images/json")),
        ("system info", request("GET", f"{v}/info")),
        ("a path with ..", request("POST", f"{v}/../containers/create", ROOT_CONTAINER)),
        ("an encoded slash", request("GET", f"{v}/containers%2Fjson")),
        ("an encoded dot segment", request("GET", f"{v}/%2e%2e/swarm")),
        ("an empty segment", request("GET", f"{v}//swarm")),
        ("an unknown version prefix", request("GET", "/v2.0/swarm")),
        ("a lower-case method", request("get", f"{v}/swarm")),
        ("a lower-case POST", request("post", f"{v}/containers/create", ROOT_CONTAINER)),
        ("duplicate Content-Length", request("POST", create, None, [length, length]) + b"{}"),
        ("Content-Length and chunked", request("POST", create, None, [length, chunked]) + CHUNKED),
        ("a chunked create", request("POST", create, None, [chunked]) + CHUNKED),
        ("an oversized body", request("POST", f"{v}/services/create", '{"Name": "' + "x" * (2 << 20) + '"}')),
        ("a read with a body", request("GET", f"{v}/services", {"x": 1})),
        ("an absolute-form target", request("GET", f"http://docker{v}/swarm")),
        ("not HTTP", b"HELLO\r\n\r\n"),
        ("a container inspect of another service", request("GET", f"{v}/containers/{{other}}/json")),
    ]


def reads(policy):
    """(what, raw request, check) the policy's job needs."""
    v = "/v1.41"
    if policy != "discovery":
        raise SystemExit(f"guard_probe.py: no reads known for the policy {policy!r}")
    return [
        ("ping", request("GET", "/_ping"), None),
        ("version", request("GET", "/version"), None),
        ("services", request("GET", f"{v}/services"), "JUPYTERHUB_SERVICE_PREFIX"),
        ("tasks", request("GET", f"{v}/tasks"), None),
        ("events until now", request("GET", f"{v}/events?since=1&until=2"), None),
    ]


def send(path, raw, timeout=10):
    """Sends `raw`; (status, body text). Status 0: the guard closed the
    connection without an answer (also a refusal)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        try:
            s.sendall(raw)
        except OSError:
            pass
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except OSError:
            pass
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, body.decode(errors="replace")


def main(argv):
    path, policy = argv[0], argv[1]
    secrets = [argv[i + 1] for i, a in enumerate(argv) if a == "--secret"]
    other = next((argv[i + 1] for i, a in enumerate(argv) if a == "--other-container"), "x")
    refused = passed = failed = 0
    for what, raw in attacks():
        raw = raw.replace(b"{other}", other.encode())
        status, body = send(path, raw)
        if status in (0, 400, 403, 405, 413):
            refused += 1
            print(f"refused {status} {what}")
        else:
            failed += 1
            print(f"FAIL    {status} {what}: {body[:200]}")
    for what, raw, wanted in reads(policy):
        status, body = send(path, raw)
        leaked = [s for s in secrets if s in body]
        if status == 200 and not leaked and (wanted is None or wanted in body):
            passed += 1
            print(f"passed  {status} {what}")
        else:
            failed += 1
            print(f"FAIL    {status} {what}: leaked {leaked}, {body[:200]}")
    # Two calls on one kept-alive connection: the second is judged too.
    keep = request("GET", "/_ping").replace(b"Connection: close", b"Connection: keep-alive")
    status, body = send(path, keep + request("GET", "/v1.41/swarm"))
    if body.count("hubgate docker-guard") == 1 and status == 200:
        refused += 1
        print("refused the second call on a kept-alive connection")
    else:
        failed += 1
        print(f"FAIL    the second call on a kept-alive connection: {status} {body[:200]}")
    print(f"{refused} refused, {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
