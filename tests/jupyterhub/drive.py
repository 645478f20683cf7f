"""Drive a real JupyterHub through hubgate, as a user would.

Logs in (DummyAuthenticator), starts the user's server, starts a kernel, runs
`1+1` over the kernel websocket and expects `2`, then stops the server and
waits for its route to leave the proxy. Every wait is bounded. Exits non-zero
with a message on the first failure.
"""

import argparse
import asyncio
import datetime
import json
import sys
import time
import uuid

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

USER = "alice"


def step(msg):
    print(f"[drive] {msg}", flush=True)


def fail(msg):
    sys.exit(f"[drive] FAILED: {msg}")


def wait(what, check, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except requests.ConnectionError:
            result = None  # not listening yet
        if result:
            return result
        if time.monotonic() > deadline:
            fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.25)


def proxy_routes(args):
    r = requests.get(
        f"{args.proxy_api}/api/routes",
        headers={"Authorization": f"token {args.proxy_token}"},
        timeout=10,
    )
    r.raise_for_status()
    return r.json()


async def run_code(ws_url, token, code):
    conn = await connect_kernel(ws_url, token)
    try:
        return await execute(conn, code, 60)
    finally:
        conn.close()


async def connect_kernel(ws_url, token):
    request = HTTPRequest(ws_url, headers={"Authorization": f"token {token}"})
    return await asyncio.wait_for(websocket_connect(request), 30)


async def execute(conn, code, timeout):
    """Runs `code` on an open kernel websocket: its result's text."""
    msg_id = uuid.uuid4().hex
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    header = {
        "msg_id": msg_id,
        "username": USER,
        "session": uuid.uuid4().hex,
        "msg_type": "execute_request",
        "version": "5.3",
        "date": now,
    }
    content = {
        "code": code,
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    message = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
    conn.write_message(json.dumps({**message, "channel": "shell", "buffers": []}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(conn.read_message(), max(0.1, deadline - time.monotonic()))
        if raw is None:
            fail("kernel websocket closed before the result")
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "error":
            fail(f"kernel error: {msg['content']}")
        if msg["msg_type"] == "execute_result":
            return msg["content"]["data"]["text/plain"]
    fail(f"no execute_result within {timeout}s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--public", required=True, help="hubgate's public URL")
    parser.add_argument("--proxy-api", required=True, help="hubgate's REST API URL")
    parser.add_argument("--proxy-token", required=True)
    args = parser.parse_args()
    public = args.public.rstrip("/")

    s = requests.Session()
    wait("the hub behind hubgate", lambda: s.get(f"{public}/hub/login", timeout=10).status_code == 200)
    xsrf = s.cookies.get("_xsrf")
    if not xsrf:
        fail("no _xsrf cookie from /hub/login")
    r = s.post(
        f"{public}/hub/login",
        data={"username": USER, "password": "any", "_xsrf": xsrf},
        allow_redirects=False,
        timeout=30,
    )
    if r.status_code != 302:
        fail(f"login answered {r.status_code}: {r.text[:300]}")
    r = s.get(f"{public}/hub/home", timeout=30)
    if r.status_code != 200 or "/hub/login" in r.url:
        fail(f"not logged in: {r.status_code} {r.url}")
    step(f"logged in as {USER}")

    api = f"{public}/hub/api"
    xsrf_header = {"X-XSRFToken": s.cookies.get("_xsrf")}
    r = s.post(f"{api}/users/{USER}/server", headers=xsrf_header, timeout=60)
    if r.status_code not in (201, 202):
        fail(f"starting the server answered {r.status_code}: {r.text[:300]}")

    def ready():
        info = s.get(f"{api}/users/{USER}", headers=xsrf_header, timeout=10).json()
        server = info.get("servers", {}).get("")
        return server if server and server.get("ready") else None

    server = wait("the server to be ready", ready)
    step(f"server ready at {server['url']}")

    routes = wait("the user's route in hubgate", lambda: proxy_routes(args).get(f"/user/{USER}"))
    if routes.get("user") != USER or routes.get("jupyterhub") is not True:
        fail(f"unexpected route data {routes}")
    step(f"route /user/{USER} -> {routes['target']}")

    r = s.post(f"{api}/users/{USER}/tokens", headers=xsrf_header, json={"note": "e2e"}, timeout=30)
    if r.status_code != 201:
        fail(f"token request answered {r.status_code}: {r.text[:300]}")
    token = r.json()["token"]

    auth = {"Authorization": f"token {token}"}
    r = requests.post(f"{public}/user/{USER}/api/kernels", headers=auth, json={"name": "python3"}, timeout=60)
    if r.status_code != 201:
        fail(f"starting a kernel answered {r.status_code}: {r.text[:300]}")
    kernel = r.json()["id"]
    step(f"kernel {kernel} started")

    ws_url = public.replace("http", "ws", 1) + f"/user/{USER}/api/kernels/{kernel}/channels"
    result = asyncio.run(run_code(ws_url, token, "1+1"))
    if result != "2":
        fail(f"1+1 gave {result!r}")
    step("1+1 = 2 over the kernel websocket")

    r = s.delete(f"{api}/users/{USER}/server", headers=xsrf_header, timeout=60)
    if r.status_code not in (202, 204):
        fail(f"stopping the server answered {r.status_code}: {r.text[:300]}")
    wait("the route to be removed", lambda: f"/user/{USER}" not in proxy_routes(args), timeout=60)
    step("server stopped and its route is gone")
    print("[drive] OK", flush=True)


if __name__ == "__main__":
    main()
