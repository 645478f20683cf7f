"""A small OpenID Connect provider for the tests, speaking the protocol end to end.

Usage: oidc_provider.py HOST PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI [USER=GROUP,GROUP ...]

The authorization code flow as RFC 6749 and RFC 7636 (PKCE) define it:
- GET /authorize (response_type=code, client_id, redirect_uri, state and,
  when the client sends one, an S256 code_challenge) shows a sign-in form;
  POST /authorize with a known username redirects to redirect_uri with a
  one-time code and the state.
- POST /token (grant_type=authorization_code, the code, the same
  redirect_uri, the client's credentials by HTTP Basic or in the body, and
  the PKCE code_verifier) answers an access token, once per code.
- GET /userinfo with the bearer token answers the user's claims: sub,
  preferred_username, email and groups.
Anything else is the protocol's error (invalid_request, invalid_client,
invalid_grant, 401). Every request is logged on stderr. Runs until killed.
"""

import base64
import hashlib
import html
import json
import secrets
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Provider:
    def __init__(self, client_id, client_secret, redirect_uri, users):
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.users = users
        self.codes = {}
        self.tokens = {}

    def claims(self, user):
        return {
            "sub": f"sub-{user}",
            "preferred_username": user,
            "email": f"{user}@example.org",
            "groups": self.users[user],
        }


def s256(verifier):
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Handler(BaseHTTPRequestHandler):
    provider = None

    def answer(self, status, body, content_type="application/json", headers=()):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, code, description):
        self.answer(status, {"error": code, "error_description": description})

    def form(self):
        length = int(self.headers.get("Content-Length") or 0)
        return {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(length).decode()).items()}

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        if url.path == "/authorize":
            self.authorize_form(query)
        elif url.path == "/userinfo":
            self.userinfo()
        else:
            self.error(404, "not_found", url.path)

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/authorize":
            self.sign_in(self.form())
        elif url.path == "/token":
            self.token(self.form())
        else:
            self.error(404, "not_found", url.path)

    def check_authorize(self, q):
        p = self.provider
        if q.get("response_type") != "code":
            return "response_type must be code"
        if q.get("client_id") != p.client_id:
            return f"unknown client {q.get('client_id')!r}"
        if q.get("redirect_uri") != p.redirect_uri:
            return f"redirect_uri {q.get('redirect_uri')!r} is not the registered one"
        if "code_challenge" in q and q.get("code_challenge_method") != "S256":
            return "only S256 code challenges"
        return None

    def authorize_form(self, q):
        why = self.check_authorize(q)
        if why:
            self.error(400, "invalid_request", why)
            return
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in q.items()
        )
        page = f'<form method="post" action="/authorize">{hidden}<input name="username"><button>Sign in</button></form>'
        self.answer(200, page, "text/html")

    def sign_in(self, f):
        why = self.check_authorize(f)
        if why:
            self.error(400, "invalid_request", why)
            return
        user = f.get("username", "")
        if user not in self.provider.users:
            self.answer(403, "unknown user", "text/plain")
            return
        code = secrets.token_urlsafe(24)
        self.provider.codes[code] = {
            "user": user,
            "redirect_uri": f["redirect_uri"],
            "challenge": f.get("code_challenge"),
        }
        back = f"{f['redirect_uri']}?{urllib.parse.urlencode({'code': code, 'state': f.get('state', '')})}"
        self.answer(302, "", "text/plain", [("Location", back)])

    def client(self, f):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            pair = base64.b64decode(auth[6:]).decode()
            cid, _, secret = pair.partition(":")
            return urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(secret)
        return f.get("client_id"), f.get("client_secret")

    def token(self, f):
        p = self.provider
        if self.client(f) != (p.client_id, p.client_secret):
            self.error(401, "invalid_client", "wrong client credentials")
            return
        if f.get("grant_type") != "authorization_code":
            self.error(400, "unsupported_grant_type", str(f.get("grant_type")))
            return
        grant = p.codes.pop(f.get("code", ""), None)
        if grant is None or grant["redirect_uri"] != f.get("redirect_uri"):
            self.error(400, "invalid_grant", "unknown or used code, or another redirect_uri")
            return
        if grant["challenge"] and s256(f.get("code_verifier", "")) != grant["challenge"]:
            self.error(400, "invalid_grant", "the code_verifier does not match the challenge")
            return
        token = secrets.token_urlsafe(24)
        p.tokens[token] = grant["user"]
        self.answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600, "scope": "openid"})

    def userinfo(self):
        auth = self.headers.get("Authorization", "")
        user = self.provider.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        if user is None:
            self.answer(401, {"error": "invalid_token"}, headers=[("WWW-Authenticate", "Bearer")])
            return
        self.answer(200, self.provider.claims(user))


def main():
    host, port, client_id, client_secret, redirect_uri, *users = sys.argv[1:]
    groups = {}
    for spec in users:
        name, _, listed = spec.partition("=")
        groups[name] = [g for g in listed.split(",") if g]
    Handler.provider = Provider(client_id, client_secret, redirect_uri, groups)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"oidc provider on http://{host}:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
