"""Play a JupyterHub user against a deployment made by `hubgate deploy`.

One step per call, so a test can act between steps (stop a node, edit the
deployment); the session (cookies, the user's API token) is kept in
--state. Every wait is bounded; a failure exits non-zero with a message.

  login      log in (DummyAuthenticator, --password), make an API token
  refused    a login with --password is refused
  spawn      start the user's server and wait until the hub says it is ready
  kernel     start a kernel and run 1+1 over its websocket: expect 2
  write      write NAME with TEXT into the notebook directory
  read       expect NAME to hold TEXT
  routed     every --public URL reaches the user's server
  unrouted   no --public URL reaches it any more (the hub answers instead)
  known      the hub still counts the server as running and ready
  hold       for --seconds: 1+1 every second over one open kernel websocket
             and the files listed over REST every second, through the first
             --public URL; prints each failure and the counts
  admin      the hub's admin API lists every --expect-user
  stop       stop the server
  browse     a fresh browser: log in, open the running server's /lab (the
             OAuth round trip between the server and the hub); retried for
             --timeout, prints how long it took
  activity   the server's own activity report reaches the hub (needs a
             short JUPYTERHUB_ACTIVITY_INTERVAL in the server's environment)
  oauth      expect /hub/oauth_login to redirect to GitHub with the
             configured client id and callback (--client-id, --callback)
"""

import argparse
import asyncio
import concurrent.futures
import json
import sys
import time
import urllib.parse

import requests

# The kernel round trip is drive.py's (this directory is on sys.path).
from drive import connect_kernel, execute, run_code


def step(msg):
    print(f"[swarm-drive] {msg}", flush=True)


def fail(msg):
    sys.exit(f"[swarm-drive] FAILED: {msg}")


def wait(what, check, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            result = check()
        except requests.RequestException as e:
            result, last = None, e
        if result:
            return result
        if time.monotonic() > deadline:
            fail(f"timed out after {timeout}s waiting for {what} (last error: {last})")
        time.sleep(0.25)


class Session:
    def __init__(self, args):
        self.args = args
        self.public = args.public[0].rstrip("/")
        self.http = requests.Session()
        self.token = None
        try:
            with open(args.state) as f:
                state = json.load(f)
            self.http.cookies.update(state["cookies"])
            self.token = state.get("token")
        except FileNotFoundError:
            pass

    def save(self):
        with open(self.args.state, "w") as f:
            json.dump({"cookies": self.http.cookies.get_dict(), "token": self.token}, f)

    def xsrf(self):
        # The hub sets _xsrf for more than one path: any of them will do.
        values = [c.value for c in self.http.cookies if c.name == "_xsrf"]
        return {"X-XSRFToken": values[0] if values else ""}

    def hub_api(self, method, path, **kw):
        return self.http.request(method, f"{self.public}/hub/api{path}", headers=self.xsrf(), timeout=60, **kw)

    def server_api(self, base, method, path, **kw):
        auth = {"Authorization": f"token {self.token}"}
        url = f"{base.rstrip('/')}/user/{self.args.user}/api{path}"
        return requests.request(method, url, headers=auth, timeout=60, allow_redirects=False, **kw)


def login(s):
    user = s.args.user
    s.http.cookies.clear()
    wait("the hub's login page", lambda: s.http.get(f"{s.public}/hub/login", timeout=10).status_code == 200, 120)
    r = s.http.post(
        f"{s.public}/hub/login",
        data={"username": user, "password": s.args.password, "_xsrf": s.xsrf()["X-XSRFToken"]},
        allow_redirects=False,
        timeout=30,
    )
    if r.status_code != 302:
        fail(f"login answered {r.status_code}: {r.text[:300]}")
    take_token(s)
    step(f"logged in as {user}")


def take_token(s):
    """An API token of the logged-in session's user, for the server's API."""
    r = s.hub_api("POST", f"/users/{s.args.user}/tokens", json={"note": "swarm test"})
    if r.status_code != 201:
        fail(f"token request answered {r.status_code}: {r.text[:300]}")
    s.token = r.json()["token"]


def spawn(s):
    """Starts the user's server (with --profile, that profile) and waits
    until hubgate reaches it; with --expect-refused, until the hub gives
    the spawn up, and prints why."""
    user = s.args.user
    started = time.monotonic()
    options = {"json": {"profile": s.args.profile}} if s.args.profile else {}
    r = s.hub_api("POST", f"/users/{user}/server", **options)
    if r.status_code not in (201, 202, 400):
        fail(f"starting the server answered {r.status_code}: {r.text[:300]}")
    if s.args.expect_refused:
        message = spawn_failure(s)
        step(f"the spawn was refused after {time.monotonic() - started:.1f} s: {message}")
        return

    seen = {}

    def ready():
        model = s.hub_api("GET", f"/users/{user}").json()
        seen["model"] = model
        server = model.get("servers", {}).get("")
        if not server and not model.get("pending") and time.monotonic() - started > 5:
            # The hub gave the spawn up: say why rather than wait on.
            fail(f"the spawn ended without a server: {spawn_failure_or_model(s, model)}")
        return server if server and server.get("ready") else None

    try:
        server = wait("the server to be ready", ready, 180)
    except SystemExit:
        print(f"[swarm-drive] the hub's last word on {user}: {seen.get('model')}", flush=True)
        raise
    at = time.monotonic()
    step(f"server ready at {server['url']} in {at - started:.1f} s")
    wait("hubgate to reach the new server", lambda: reaches_server(s, s.public), 30)
    step(f"reached through hubgate {time.monotonic() - at:.2f} s after the hub said ready")


def progress_events(s, timeout):
    """The hub's progress events of the user's spawn, as they come."""
    url = f"{s.public}/hub/api/users/{s.args.user}/server/progress"
    with s.http.get(url, headers=s.xsrf(), stream=True, timeout=timeout) as r:
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                yield json.loads(line[5:])


def spawn_failure_or_model(s, model):
    """Why the last spawn failed, as the progress events say, or the user's
    model when they say nothing."""
    try:
        for event in progress_events(s, 10):
            if event.get("failed"):
                return event.get("message", "")
    except requests.RequestException as e:
        return f"progress unreadable ({e}); user model {model}"
    return f"no failure in the progress events; user model {model}"


def spawn_failure(s):
    """The message of the spawn's failure, from the hub's progress events
    (fails if the server starts instead)."""
    for event in progress_events(s, s.args.timeout):
        if event.get("failed"):
            return event.get("message", "")
        if event.get("ready"):
            fail(f"the server started: {event}")
    fail("the progress events ended with neither a failure nor a start")


def kernel(s):
    r = s.server_api(s.public, "POST", "/kernels", json={"name": "python3"})
    if r.status_code != 201:
        fail(f"starting a kernel answered {r.status_code}: {r.text[:300]}")
    kid = r.json()["id"]
    ws = s.public.replace("http", "ws", 1) + f"/user/{s.args.user}/api/kernels/{kid}/channels"
    result = asyncio.run(run_code(ws, s.token, "1+1"))
    if result != "2":
        fail(f"1+1 gave {result!r}")
    step(f"1+1 = 2 over the websocket of kernel {kid}")


def write(s):
    body = {"type": "file", "format": "text", "content": s.args.text}
    r = s.server_api(s.public, "PUT", f"/contents/{s.args.name}", json=body)
    if r.status_code not in (200, 201):
        fail(f"writing {s.args.name} answered {r.status_code}: {r.text[:300]}")
    step(f"wrote {s.args.name}")


def read(s):
    r = s.server_api(s.public, "GET", f"/contents/{s.args.name}?content=1&format=text&type=file")
    if r.status_code != 200:
        fail(f"reading {s.args.name} answered {r.status_code}: {r.text[:300]}")
    if r.json()["content"] != s.args.text:
        fail(f"{s.args.name} holds {r.json()['content']!r}, not {s.args.text!r}")
    step(f"{s.args.name} kept its text")


def reaches_server(s, base):
    r = s.server_api(base, "GET", "/status")
    return r.status_code == 200 and "started" in r.text


def routed(s):
    for base in s.args.public:
        wait(f"{base} to reach the server", lambda base=base: reaches_server(s, base), s.args.timeout)
    step(f"the server answers through {len(s.args.public)} published port(s)")


def unrouted(s):
    for base in s.args.public:
        wait(f"{base} to stop reaching the server", lambda base=base: not reaches_server(s, base), s.args.timeout)
    step(f"no published port reaches the server ({len(s.args.public)} checked)")


def known(s):
    """The hub counts the server as running: ready, or ready once a hub
    that just started has checked it (`pending: check`), within --timeout."""

    def ready():
        server = s.hub_api("GET", f"/users/{s.args.user}").json().get("servers", {}).get("")
        if not server or server.get("pending") not in (None, "check"):
            fail(f"the hub no longer counts the server as running: {server}")
        return server if server.get("ready") else None

    wait("the hub's check of the server", ready, s.args.timeout)
    step("the hub still counts the server as running")


def hold(s):
    """1+1 over one websocket and a REST listing, every second."""
    r = s.server_api(s.public, "GET", "/kernels")
    if r.status_code != 200 or not r.json():
        fail(f"no kernel to hold: {r.status_code} {r.text[:200]}")
    kid = r.json()[0]["id"]
    ws = s.public.replace("http", "ws", 1) + f"/user/{s.args.user}/api/kernels/{kid}/channels"
    counts = asyncio.run(hold_loop(s, ws))
    step(
        f"hold for {s.args.seconds:.0f} s: {counts['runs']} runs of 1+1, {counts['run_failures']} failed; "
        f"{counts['listings']} listings, {counts['listing_failures']} failed; "
        f"{counts['reconnects']} websocket reconnects"
    )


async def hold_loop(s, ws):
    counts = {"runs": 0, "run_failures": 0, "listings": 0, "listing_failures": 0, "reconnects": 0}
    conn = await connect_kernel(ws, s.token)
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    while time.monotonic() - started < s.args.seconds:
        tick = time.monotonic()
        at = f"{tick - started:.1f} s"
        counts["runs"] += 1
        try:
            result = await execute(conn, "1+1", 5)
            if result != "2":
                raise ValueError(f"1+1 gave {result!r}")
        except (Exception, SystemExit) as e:  # noqa: BLE001 - every failure is counted and shown
            counts["run_failures"] += 1
            step(f"hold: at {at} 1+1 failed: {e}")
            conn.close()
            try:
                conn = await connect_kernel(ws, s.token)
                counts["reconnects"] += 1
            except Exception as e2:  # noqa: BLE001
                step(f"hold: at {at} the websocket did not reopen: {e2}")
        counts["listings"] += 1
        try:
            r = await loop.run_in_executor(None, lambda: s.server_api(s.public, "GET", "/contents"))
            if r.status_code != 200:
                raise ValueError(f"answered {r.status_code}")
        except Exception as e:  # noqa: BLE001
            counts["listing_failures"] += 1
            step(f"hold: at {at} listing the files failed: {e}")
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    conn.close()
    return counts


def admin(s):
    r = s.hub_api("GET", "/users")
    if r.status_code != 200:
        fail(f"the admin API answered {r.status_code}: {r.text[:300]}")
    names = sorted(u["name"] for u in r.json())
    missing = [u for u in s.args.expect_user if u not in names]
    if missing:
        fail(f"the admin API lists {names}, not {missing}")
    step(f"the admin API lists {', '.join(names)}")


def stop(s):
    # The first URL's manager may have just come back (its hubgate starting,
    # then learning its routes, answers 503): wait for the hub there, as a
    # browser would retry.
    # Asked without the session's cookies: a logged-in session is sent on
    # from the login page, and its XSRF cookie must stay as it is.
    login_page = f"{s.public}/hub/login"
    wait("the hub's login page", lambda: requests.get(login_page, timeout=10, allow_redirects=False).ok, 120)
    started = time.monotonic()
    r = s.hub_api("DELETE", f"/users/{s.args.user}/server")
    if r.status_code not in (202, 204):
        fail(f"stopping the server answered {r.status_code}: {r.text[:300]}")

    def stopped():
        return not s.hub_api("GET", f"/users/{s.args.user}").json().get("servers", {})

    wait("the server to stop", stopped, 120)
    step(f"server stopped in {time.monotonic() - started:.1f} s")


def browse(s):
    user = s.args.user
    started = time.monotonic()
    last = None
    while time.monotonic() - started < s.args.timeout:
        s.http.cookies.clear()
        try:
            s.http.get(f"{s.public}/hub/login", timeout=10)
            r = s.http.post(
                f"{s.public}/hub/login",
                data={"username": user, "password": s.args.password, "_xsrf": s.xsrf()["X-XSRFToken"]},
                allow_redirects=False,
                timeout=30,
            )
            if r.status_code == 302:
                r = s.http.get(f"{s.public}/user/{user}/lab", timeout=30)
                if r.status_code == 200 and r.url.endswith(f"/user/{user}/lab"):
                    step(f"a fresh login opened {r.url} after {time.monotonic() - started:.1f} s")
                    return
            last = f"{r.status_code} at {r.url}"
        except requests.RequestException as e:
            last = str(e)
        time.sleep(0.5)
    fail(f"no fresh login reached the server's /lab in {s.args.timeout:.0f} s (last: {last})")


def activity(s):
    user = s.args.user

    def last_activity():
        return s.hub_api("GET", f"/users/{user}").json()["servers"][""]["last_activity"]

    before = last_activity()
    time.sleep(1.1)  # the hub's timestamps have whole seconds at worst
    r = s.server_api(s.public, "GET", "/kernels")
    if r.status_code != 200:
        fail(f"listing kernels answered {r.status_code}")
    wait("the server's activity report to reach the hub", lambda: last_activity() != before, s.args.timeout)
    step(f"the hub saw the server's activity ({before} -> {last_activity()})")


def refused(s):
    s.http.cookies.clear()
    wait("the hub's login page", lambda: s.http.get(f"{s.public}/hub/login", timeout=10).status_code == 200, 120)
    r = s.http.post(
        f"{s.public}/hub/login",
        data={"username": s.args.user, "password": s.args.password, "_xsrf": s.xsrf()["X-XSRFToken"]},
        allow_redirects=False,
        timeout=30,
    )
    if r.status_code == 302:
        fail(f"the password {s.args.password!r} logged {s.args.user} in")
    step(f"the hub refused {s.args.user} with a wrong password ({r.status_code})")


def oauth(s):
    r = wait("the hub's OAuth login", lambda: (lambda r: r if r.status_code == 302 else None)(
        s.http.get(f"{s.public}/hub/oauth_login", allow_redirects=False, timeout=10)), 120)
    location = urllib.parse.urlparse(r.headers["Location"])
    query = urllib.parse.parse_qs(location.query)
    where = f"{location.scheme}://{location.netloc}{location.path}"
    if where != "https://github.com/login/oauth/authorize":
        fail(f"redirected to {where}, not GitHub's authorize URL")
    if query.get("client_id") != [s.args.client_id]:
        fail(f"client_id {query.get('client_id')}, wanted {s.args.client_id}")
    if query.get("redirect_uri") != [s.args.callback]:
        fail(f"redirect_uri {query.get('redirect_uri')}, wanted {s.args.callback}")
    step(f"/hub/oauth_login redirects to {where} with client_id and redirect_uri {s.args.callback}")


def named(s, server):
    return s.hub_api("GET", f"/users/{s.args.user}").json().get("servers", {}).get(server)


def start_named(s, server):
    return s.hub_api("POST", f"/users/{s.args.user}/servers/{server}")


def expect(r, status, words, what):
    if r.status_code != status or words not in r.text:
        fail(f"{what} answered {r.status_code}, not {status} with {words!r}: {r.text[:300]}")
    step(f"{what}: {status} {r.json().get('message', r.text)[:120]!r}")


def limits(s):
    """The deployment's limits as JupyterHub enforces them: concurrent
    spawns 1, active servers 2, named servers 2, the culler after 40 s."""
    # Two spawns at once: the hub answers the first's request when its
    # server is up (or after 10 s), so the second arrives while the first
    # is pending and is one too many.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = dict(zip("ab", pool.map(lambda n: start_named(s, n), "ab")))
    refused = [n for n, r in answers.items() if r.status_code == 429]
    started = [n for n, r in answers.items() if r.status_code in (201, 202)]
    if len(refused) != 1 or len(started) != 1:
        fail(f"two spawns at once answered {[(n, r.status_code, r.text[:100]) for n, r in answers.items()]}")
    expect(answers[refused[0]], 429, "Too many users trying to log in", "a second spawn at once")
    for n in [started[0], refused[0]]:
        if n == refused[0]:
            r = start_named(s, n)
            if r.status_code not in (201, 202):
                fail(f"starting the named server {n} answered {r.status_code}: {r.text[:300]}")
        wait(f"the named server {n} to be ready", lambda n=n: (named(s, n) or {}).get("ready"), 180)
    step("named servers a and b run (the limit is 2)")
    expect(start_named(s, "c"), 400, "maximum of 2 named servers", "a third named server")
    r = s.hub_api("POST", f"/users/{s.args.user}/server")
    expect(r, 429, "Active user limit exceeded", "the default server beside two running")
    started = time.monotonic()

    def culled():
        return not s.hub_api("GET", f"/users/{s.args.user}").json().get("servers", {})

    wait("the culler to stop both idle servers", culled, s.args.timeout)
    step(f"the culler stopped both idle servers {time.monotonic() - started:.0f} s after the last was ready")


def profile(s):
    """The spawn page offers the deployment's profiles; a spawn through the
    REST API that names one gets it."""
    page = s.http.get(f"{s.public}/hub/spawn", timeout=30)
    offered = [p for p in ("small", "big") if f'value="{p}"' in page.text]
    if offered != ["small", "big"]:
        fail(f"the spawn page ({page.status_code}) offers {offered}: {page.text[:500]}")
    step("the spawn page offers the profiles small and big")
    r = s.hub_api("POST", f"/users/{s.args.user}/server", json={"profile": "big"})
    if r.status_code not in (201, 202):
        fail(f"starting the server with the profile big answered {r.status_code}: {r.text[:300]}")
    wait("the server to be ready", lambda: (named(s, "") or {}).get("ready"), 180)
    step("the server with the profile big is ready")


def oidc(s):
    """Signs in through the deployment's OAuth provider as a browser does:
    the hub's redirect (with a PKCE challenge), the provider's sign-in
    form, the callback through hubgate (where the hub exchanges the code)."""
    user = s.args.user
    s.http.cookies.clear()

    def redirected():
        r = s.http.get(f"{s.public}/hub/oauth_login", allow_redirects=False, timeout=10)
        return r if r.status_code == 302 else None

    authorize = wait("the hub's OAuth login", redirected, 120).headers["Location"]
    query = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(authorize).query).items()}
    if query.get("code_challenge_method") != "S256":
        fail(f"no PKCE challenge in {authorize}")
    r = s.http.post(authorize.split("?")[0], data={**query, "username": user}, allow_redirects=False, timeout=30)
    if r.status_code != 302:
        fail(f"the provider's sign-in answered {r.status_code}: {r.text[:300]}")
    r = s.http.get(r.headers["Location"], allow_redirects=False, timeout=60)
    if s.args.expect_refused:
        if r.status_code != 403:
            fail(f"the callback for {user} answered {r.status_code}, not 403: {r.text[:300]}")
        step(f"the hub refused {user} after the provider's sign-in (403: not in an allowed group)")
        return
    if r.status_code != 302:
        fail(f"the callback answered {r.status_code}: {r.text[:300]}")
    take_token(s)
    info = s.hub_api("GET", f"/users/{user}").json()
    groups = sorted(info.get("groups", []))
    step(f"signed in as {user} through the provider: admin {info.get('admin')}, groups {groups}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("action", choices=["login", "spawn", "kernel", "write", "read", "routed",
                                      "unrouted", "known", "stop", "oauth", "browse", "activity",
                                      "refused", "hold", "admin", "limits", "profile", "oidc"])
    p.add_argument("--public", action="append", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--user", default="alice")
    p.add_argument("--password", default="any")
    p.add_argument("--name", default="kept.txt")
    p.add_argument("--text", default="written before the restart")
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--expect-user", action="append", default=[])
    p.add_argument("--client-id")
    p.add_argument("--callback")
    p.add_argument("--expect-refused", action="store_true")
    p.add_argument("--profile")
    args = p.parse_args()
    s = Session(args)
    globals()[args.action](s)
    s.save()


if __name__ == "__main__":
    main()
