"""A hub service for the swarm tests: a dashboard that lists the hub's users.

Runs in the hub's image as the deployment's `hub.services` entry `dash`:
it serves on the port JUPYTERHUB_SERVICE_URL names and, for each GET,
asks the hub's API with its own token (JUPYTERHUB_API_TOKEN, which the
service's entrypoint read from its Docker secret) for the users (its
scope allows) and for the proxy's routes (its scope does not), and
answers with both as JSON.
"""

import http.server
import json
import os
import urllib.error
import urllib.parse
import urllib.request

API = os.environ["JUPYTERHUB_API_URL"]
TOKEN = os.environ["JUPYTERHUB_API_TOKEN"]


def ask(path):
    """(status, body) of a GET of the hub's API with the service's token."""
    request = urllib.request.Request(f"{API}{path}", headers={"Authorization": f"token {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, None


class Dashboard(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the standard library's name
        status, users = ask("/users")
        proxy, _ = ask("/proxy")
        body = json.dumps({
            "users": sorted(u["name"] for u in users or []),
            "users_status": status,
            "proxy_status": proxy,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


port = urllib.parse.urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"]).port
http.server.ThreadingHTTPServer(("0.0.0.0", port), Dashboard).serve_forever()
