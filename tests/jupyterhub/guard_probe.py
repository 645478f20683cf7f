"""Probe a guarded Docker API socket from a task's position: every call an
attacker in that task would try, sent raw (so malformed requests reach the
guard as written), each expected to be refused; then the reads the task's
job needs, expected to pass.

Usage: guard_probe.py SOCKET POLICY [--secret TEXT]... [--other-container ID]
                      [--other-service NAME] [--policy-b64 DATA] [--hub-secret NAME]

POLICY is the socket's policy (`discovery` or `spawner`; a spawner probe
reads the policy itself from `--policy-b64`, the guard's configuration as
`docker config inspect` shows it,
to build user-server specs that differ from an allowed one in one
attack each). A `--secret` is a value that must appear in no answer (a
user's token, the hub's cookie secret). The other container and service
are the deployment's neighbours', which the task may not touch.
Prints one line a call and `N refused, N passed, N failed`; exits non-zero
on a failure. Makes nothing when the guard holds: every call that would
make something names `hgprobe-*` so the test can look for it afterwards.
"""

import base64
import json
import socket
import sys
from urllib.parse import quote

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


def attacks(policy):
    """(what, raw request) an attacker would send; each must be refused."""
    v = "/v1.41"
    # The spawner reads which nodes are up (the list cut to their states).
    nodes = [] if policy == "spawner" else [("list nodes", request("GET", f"{v}/nodes"))]
    create = f"{v}/containers/create"
    length, chunked = "Content-Length: 2", "Transfer-Encoding: chunked"
    return [
        ("create a privileged container binding /", request("POST", f"{create}?name=hgprobe-c", ROOT_CONTAINER)),
        ("create a service binding the Docker socket", request("POST", f"{v}/services/create", BIND_SERVICE)),
        ("a spec with Mounts and mounts", request("POST", f"{v}/services/create", CASE_TRICK)),
        ("update another service", request("POST", f"{v}/services/{{service}}/update?version=1", {"Name": "x"})),
        ("remove another service", request("DELETE", f"{v}/services/{{service}}")),
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
        ("inspect a node", request("GET", f"{v}/nodes/x")),
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
        *nodes,
    ]


def server_spec(p, user="hgprobe"):
    """A user server's spec the spawner policy `p` allows (never sent as
    is: each attack changes one thing)."""
    vol = p["volume"]
    server = p["servers"][0]
    options = {k: value.replace("{username}", user) for k, value in vol["options"].items()}
    limits = {}
    if server["limits"].get("cpu_limit"):
        limits["NanoCPUs"] = server["limits"]["cpu_limit"]
    if server["limits"].get("memory_limit"):
        limits["MemoryBytes"] = server["limits"]["memory_limit"]
    mount = {
        "Type": "volume",
        "Source": vol["name"].replace("{username}", user),
        "Target": vol["target"],
        "VolumeOptions": {"Labels": vol["labels"], "DriverConfig": {"Name": vol["driver"], "Options": options}},
    }
    return {
        "Name": p["name_prefix"] + user,
        "Labels": {p["label"]: p["deployment"]},
        "TaskTemplate": {
            "ContainerSpec": {"Image": server["image"], "Mounts": [mount]},
            "Resources": {"Limits": limits},
            "Placement": {"Constraints": server["constraints"]},
            "Networks": [{"Target": p["network"]}],
        },
        "EndpointSpec": {"Mode": "dnsrr"},
    }


def changed(p, change):
    spec = server_spec(p)
    change(spec, spec["TaskTemplate"]["ContainerSpec"])
    return spec


def spawner_attacks(p, hub_secret):
    """User-server specs and calls the hub's spawner may not make."""
    v = "/v1.41"
    bind = {"Type": "bind", "Source": "/", "Target": "/host"}
    sock = {"Type": "bind", "Source": "/var/run/docker.sock", "Target": "/var/run/docker.sock"}

    def device(path):
        def change(_spec, c):
            c["Mounts"][0]["VolumeOptions"]["DriverConfig"]["Options"]["device"] = path

        return change

    def gpu(spec, _c):
        spec["TaskTemplate"]["Resources"]["Reservations"] = {
            "GenericResources": [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}]
        }

    specs = [
        ("a server binding /", lambda _s, c: c.update(Mounts=[bind])),
        ("a server with the Docker socket", lambda _s, c: c.update(Mounts=[sock])),
        ("a server whose volume binds /", device("/")),
        (
            "a server on another user's directory",
            device(
                server_spec(p, "other")["TaskTemplate"]["ContainerSpec"]["Mounts"][0]["VolumeOptions"]["DriverConfig"][
                    "Options"
                ].get("device", "/srv/other")
            ),
        ),
        ("a server of a foreign image", lambda _s, c: c.update(Image="alpine:latest")),
        ("a server on the host network", lambda s, _c: s["TaskTemplate"].update(Networks=[{"Target": "host"}])),
        ("a server on another network", lambda s, _c: s["TaskTemplate"].update(Networks=[{"Target": "ingress"}])),
        ("a server with added capabilities", lambda _s, c: c.update(CapabilityAdd=["CAP_SYS_ADMIN"])),
        ("a server with sysctls", lambda _s, c: c.update(Sysctls={"kernel.domainname": "x"})),
        ("a server named outside the pattern", lambda s, _c: s.update(Name="hgprobe-server")),
        ("a server on every node", lambda s, _c: s.update(Mode={"Global": {}})),
        ("a server publishing a port", lambda s, _c: s["EndpointSpec"].update(Ports=[{"TargetPort": 22}])),
        ("a server with a routing label", lambda s, _c: s["Labels"].update({"hubgate.host": "hgprobe.example"})),
        ("a server with its token in the spec", lambda _s, c: c.update(Env=["JUPYTERHUB_API_TOKEN=x"])),
        ("a server reserving a GPU no profile gives", gpu),
        ("a server mounting the hub's secret", lambda _s, c: c.update(Secrets=[{"SecretID": hub_secret, "File": {}}])),
    ]
    out = [(what, request("POST", f"{v}/services/create", changed(p, change))) for what, change in specs]
    hidden = json.dumps(server_spec(p))[:-1] + ', "endpointspec": {"Ports": [{"TargetPort": 22}]}}'
    mounts = json.dumps(server_spec(p)).replace('"Mounts": [', '"mounts": [' + json.dumps(bind) + '], "Mounts": [')
    token = {"Name": p["secret_prefix"] + "hgprobe", "Data": "eA=="}
    foreign = "/services/{service}"
    return out + [
        ("a spec hiding ports under a lower-case key", request("POST", f"{v}/services/create", hidden)),
        ("a spec with Mounts and mounts on an allowed server", request("POST", f"{v}/services/create", mounts)),
        ("a token secret without the deployment's label", request("POST", f"{v}/secrets/create", token)),
        ("inspect another service", request("GET", f"{v}{foreign}")),
        (
            "update another service to a server's spec",
            request("POST", f"{v}{foreign}/update?version=1", server_spec(p)),
        ),
        (
            "the tasks of another service",
            request("GET", f"{v}/tasks?filters=" + quote(json.dumps({"service": ["{service}"]}), safe="{}")),
        ),
        ("remove the hub's secret", request("DELETE", f"{v}/secrets/{hub_secret}")),
    ]


def nodes_cut(body):
    """A node list with each node's ID and state, and nothing else."""
    nodes = json.loads(body)
    return bool(nodes) and all(set(n) == {"ID", "Status"} and set(n["Status"]) == {"State"} for n in nodes)


def reads(policy, p):
    """(what, raw request, check) the policy's job needs."""
    v = "/v1.41"
    if policy == "spawner":
        return [
            ("ping", request("GET", "/_ping"), None),
            ("version", request("GET", "/version"), None),
            ("the servers' configuration", request("GET", f"{v}/configs/{p['configs'][0]}"), p["configs"][0]),
            ("the nodes, cut to their states", request("GET", f"{v}/nodes"), nodes_cut),
        ]
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


def option(argv, name, default):
    return next((argv[i + 1] for i, a in enumerate(argv) if a == name), default)


def main(argv):
    path, policy = argv[0], argv[1]
    secrets = [argv[i + 1] for i, a in enumerate(argv) if a == "--secret"]
    other = option(argv, "--other-container", "x")
    service = option(argv, "--other-service", "x")
    p = None
    calls = attacks(policy)
    if policy == "spawner":
        sockets = json.loads(base64.b64decode(option(argv, "--policy-b64", "")))["sockets"]
        p = next(s["policy"] for s in sockets if s["policy"]["kind"] == "spawner")
        calls += spawner_attacks(p, option(argv, "--hub-secret", "x"))
    refused = passed = failed = 0
    for what, raw in calls:
        raw = raw.replace(b"{other}", other.encode()).replace(b"{service}", service.encode())
        status, body = send(path, raw)
        if status in (0, 400, 403, 405, 413):
            refused += 1
            print(f"refused {status} {what}")
        else:
            failed += 1
            print(f"FAIL    {status} {what}: {body[:200]}")
    for what, raw, wanted in reads(policy, p):
        status, body = send(path, raw)
        leaked = [s for s in secrets if s in body]
        ok = wanted is None or (wanted(body) if callable(wanted) else wanted in body)
        if status == 200 and not leaked and ok:
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
