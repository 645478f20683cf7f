"""hubgate's JupyterHub configuration, for a hub that `hubgate deploy` runs.

A module of its own (a Docker config mounted beside the hub's
jupyterhub_config.py): the proxy class, and `configure(c, values)`, which
registers it and the spawner (`hubgate_spawner`, mounted beside it) and
sets the hub up from the deployment's values. The generated
jupyterhub_config.py holds only those values and calls `configure`; this
file holds no value of a deployment. tests/jupyterhub/config_check.py loads
rendered configurations through it.
"""

import asyncio
import json
import socket
import sys

import aiohttp
import aiohttp.connector
import aiohttp.resolver
from aiohttp import ClientResponseError
from hubgate_spawner import (
    RESOURCE_TRAITS,
    HubgateSwarmSpawner,
    prepare_user_directory,
    remove_leftover_service,
)
from jupyterhub.httpclient import fetch
from jupyterhub.proxy import ConfigurableHTTPProxy
from jupyterhub.utils import url_path_join
from traitlets import Float, Integer, Unicode


def read_secret(path):
    """A Docker secret's text, without the trailing newline."""
    with open(path) as f:
        return f.read().strip()


class HubgateProxy(ConfigurableHTTPProxy):
    """hubgate's API on every replica, not on one picked by DNS.

    Each hubgate replica keeps its own route table. Sent to the service
    name, a change would reach one replica at random, and a route deleted
    on one would stay on another (still pointing where a stopped server
    was). So every change goes to each replica the service name resolves
    to, and the routes the hub checks are all replicas' together: a route
    missing on one, or with another target there, is shown with no target,
    so the hub's periodic check writes it again everywhere; a stale one on
    any replica is deleted everywhere; activity is the latest any replica
    saw. A replica that does not answer within `replica_timeout` is
    skipped (and mended at the next check).
    """

    api_host = Unicode(help="hubgate's service name on the overlay network").tag(config=True)
    api_port = Integer(8001, help="hubgate's REST API port").tag(config=True)
    replica_timeout = Float(3.0, help="seconds one replica's API may take").tag(config=True)

    async def hubgate_replicas(self):
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(self.api_host, self.api_port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            return [self.api_url]
        hosts = sorted({info[4][0] for info in infos})
        port = self.api_port
        return [f"http://[{h}]:{port}" if ":" in h else f"http://{h}:{port}" for h in hosts] or [self.api_url]

    async def on_each_replica(self, path, method, body=None):
        """`method path` on every replica at once: (replica, response or error)."""
        if isinstance(body, dict):
            body = json.dumps(body)
        headers = {"Authorization": f"token {self.auth_token}"}

        async def one(base):
            url = url_path_join(base, "api/routes", path)
            async with self.semaphore:
                return await asyncio.wait_for(
                    fetch(url, method=method, headers=headers, data=body),
                    self.replica_timeout,
                )

        bases = await self.hubgate_replicas()
        answers = await asyncio.gather(*(one(b) for b in bases), return_exceptions=True)
        return list(zip(bases, answers))

    async def api_request(self, path, method="GET", body=None):
        if method == "GET":
            return await super().api_request(path, method, body)
        answers = await self.on_each_replica(path, method, body)
        done = [a for _, a in answers if not isinstance(a, BaseException)]
        refused = [a for _, a in answers if isinstance(a, ClientResponseError) and a.status < 500]
        for base, a in answers:
            if isinstance(a, BaseException) and a not in refused:
                self.log.warning("hubgate at %s missed %s %s: %s", base, method, path, a)
        # A 404 to a DELETE means that replica has no such route: its goal.
        wrong = [a for a in refused if not (method == "DELETE" and a.status == 404)]
        if wrong:
            raise wrong[0]
        if done:
            return done[0]
        if refused:
            raise refused[0]
        # No replica answered: the usual retries, against the service name.
        return await super().api_request(path, method, body)

    async def get_all_routes(self):
        views = []
        for base, a in await self.on_each_replica("", "GET"):
            if isinstance(a, BaseException):
                self.log.warning("hubgate at %s did not list its routes: %s", base, a)
                continue
            views.append(await a.json())
        if not views:
            return await super().get_all_routes()
        routes = {}
        for chp_path in set().union(*views):
            copies = [view.get(chp_path) for view in views]
            data = dict(next(c for c in copies if c is not None))
            if "jupyterhub" not in data:
                continue
            if any(c is None or c.get("target") != data.get("target") for c in copies):
                data["target"] = ""
            stamps = [c["last_activity"] for c in copies if c and c.get("last_activity")]
            if stamps:
                data["last_activity"] = max(stamps)
            routespec = self._routespec_from_chp_path(chp_path)
            routes[routespec] = self._reformat_routespec(routespec, data)
        return routes


def configure(c, values):
    """Sets the hub up for a deployment: `values` as `hubgate deploy`
    renders them into jupyterhub_config.py (deploy/src/desired/hub_config.rs)."""
    configure_clients(c)
    configure_hub(c, values["hub"])
    configure_proxy(c, values["proxy"])
    configure_spawner(c, values["spawner"])
    configure_auth(c, values["auth"])
    configure_limits(c, values["limits"])
    configure_branding(c, values["template_vars"], values["extras"])
    # The hub's services: the idle culler (a process of the hub's), and
    # the deployment's own (swarm services, each with its token).
    services, roles = [], []
    if values.get("idle_timeout"):
        culler(services, roles, values["idle_timeout"], values["cull"])
    for service in values["extras"]["services"]:
        deployment_service(services, roles, service)
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles


def configure_clients(c):
    # Docker's DNS answers with a 600 s TTL, which aiodns (c-ares) keeps: a
    # server started again within ten minutes would be looked for at its
    # old task address. getaddrinfo asks Docker's DNS each time.
    aiohttp.connector.DefaultResolver = aiohttp.resolver.ThreadedResolver
    # A connection attempt to a task that is starting can stall (its first
    # SYN lost on the overlay, the retries on the same 5-tuple too): give up
    # after 3 s and let the next attempt use a new socket.
    c.JupyterHubHTTPClient.session_options = {"timeout": aiohttp.ClientTimeout(total=300, sock_connect=3)}


def configure_hub(c, hub):
    # The hub, reached by hubgate and the user servers by its service name.
    c.JupyterHub.hub_ip = "0.0.0.0"
    c.JupyterHub.hub_port = hub["port"]
    c.JupyterHub.hub_connect_ip = hub["connect_ip"]
    c.JupyterHub.public_url = hub["public_url"]
    # The database (sqlite on the storage every manager mounts, or
    # PostgreSQL), and the secrets in
    # Docker secrets (made once and kept): a hub that fails over to another
    # manager finds its users, their servers, tokens and sessions.
    # PostgreSQL's password reaches JupyterHub in the file PGPASSFILE names,
    # which the lease entrypoint writes from its Docker secret.
    c.JupyterHub.db_url = hub["db_url"]
    c.JupyterHub.cookie_secret = bytes.fromhex(read_secret(hub["cookie_secret_path"]))
    c.CryptKeeper.keys = [bytes.fromhex(read_secret(hub["crypt_key_path"]))]
    # User servers are swarm services: they outlive a hub restart.
    c.JupyterHub.cleanup_servers = False


def configure_proxy(c, proxy):
    # hubgate is the proxy: JupyterHub drives its API and never starts one.
    c.JupyterHub.proxy_class = HubgateProxy
    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = f"http://{proxy['host']}:{proxy['port']}"
    c.ConfigurableHTTPProxy.auth_token = read_secret(proxy["token_path"])
    c.HubgateProxy.api_host = proxy["host"]
    c.HubgateProxy.api_port = proxy["port"]
    c.HubgateProxy.replica_timeout = proxy["replica_timeout"]


def configure_spawner(c, s):
    c.JupyterHub.spawner_class = HubgateSwarmSpawner
    c.Spawner.pre_spawn_hook = prepare_user_directory
    c.Spawner.post_stop_hook = remove_leftover_service
    # Each user's files: a volume whose driver options travel in the mount,
    # so it appears on whichever node runs the server.
    c.HubgateSwarmSpawner.storage = s["storage"]
    c.HubgateSwarmSpawner.user_uid = s["user_uid"]
    c.HubgateSwarmSpawner.user_volume = s["user_volume"]
    c.HubgateSwarmSpawner.volume_options = s["volume_options"]
    c.HubgateSwarmSpawner.volume_labels = s["volume_labels"]
    c.HubgateSwarmSpawner.singleuser_config = s["singleuser_config"]
    c.HubgateSwarmSpawner.singleuser_config_dir = s["singleuser_config_dir"]
    c.HubgateSwarmSpawner.token_secret = s["token_secret"]
    c.HubgateSwarmSpawner.profiles = s["profiles"]
    c.HubgateSwarmSpawner.data_mounts = s["data_mounts"]
    c.SwarmSpawner.prefix = s["prefix"]
    c.SwarmSpawner.image = s["image"]
    # Named, not read from the image: the hub's node need not have it.
    c.SwarmSpawner.cmd = s["cmd"]
    # The image is on the nodes already (or pulled there by the swarm).
    c.SwarmSpawner.pull_policy = "skip"
    c.SwarmSpawner.network_name = s["network"]
    c.SwarmSpawner.use_internal_ip = True
    # Task addresses, not a virtual IP (which needs IPVS and forgets idle
    # connections after 900 s).
    c.SwarmSpawner.extra_endpoint_spec = {"mode": "dnsrr"}
    c.SwarmSpawner.extra_create_kwargs = {"labels": s["service_labels"]}
    if s["constraints"]:
        c.SwarmSpawner.extra_placement_spec = {"constraints": s["constraints"]}
    c.SwarmSpawner.notebook_dir = s["notebook_dir"]
    c.SwarmSpawner.start_timeout = s["start_timeout"]
    c.SwarmSpawner.http_timeout = 60
    for trait, key in RESOURCE_TRAITS.items():
        if s["resources"].get(key) is not None:
            setattr(c.SwarmSpawner, trait, s["resources"][key])


def configure_auth(c, auth):
    kind = auth["kind"]
    if kind == "dummy":
        # Any name; one shared password, or any: for trials only.
        c.JupyterHub.authenticator_class = "dummy"
        if auth.get("password_path"):
            c.DummyAuthenticator.password = read_secret(auth["password_path"])
    elif kind == "github":
        c.JupyterHub.authenticator_class = "github"
        c.GitHubOAuthenticator.client_id = auth["client_id"]
        c.GitHubOAuthenticator.client_secret = read_secret(auth["client_secret_path"])
        c.GitHubOAuthenticator.oauth_callback_url = auth["callback_url"]
        if auth["allowed_organizations"]:
            c.GitHubOAuthenticator.allowed_organizations = set(auth["allowed_organizations"])
    elif kind == "oauth":
        configure_generic_oauth(c, auth)
    else:
        raise ValueError(f"unknown authenticator kind {kind!r}")
    # JupyterHub 5 lets nobody in unless told who may log in.
    if auth["allow_all"]:
        c.Authenticator.allow_all = True
    if auth["allowed_users"]:
        c.Authenticator.allowed_users = set(auth["allowed_users"])
    if auth["admin_users"]:
        c.Authenticator.admin_users = set(auth["admin_users"])


def configure_generic_oauth(c, auth):
    # Any OAuth 2 / OpenID Connect provider; groups from a userdata claim
    # become the user's JupyterHub groups (which profiles may require).
    p = auth["provider"]
    c.JupyterHub.authenticator_class = "generic-oauth"
    g = c.GenericOAuthenticator
    g.client_id = auth["client_id"]
    g.client_secret = read_secret(auth["client_secret_path"])
    g.oauth_callback_url = auth["callback_url"]
    g.authorize_url = p["authorize_url"]
    g.token_url = p["token_url"]
    g.userdata_url = p["userdata_url"]
    g.scope = p["scopes"]
    g.username_claim = p["username_claim"]
    g.login_service = p["login_service"]
    if p["groups_claim"]:
        c.GenericOAuthenticator.manage_groups = True
        g.auth_state_groups_key = f"oauth_user.{p['groups_claim']}"
        if p["allowed_groups"]:
            g.allowed_groups = set(p["allowed_groups"])
        if p["admin_groups"]:
            g.admin_groups = set(p["admin_groups"])


def configure_limits(c, limits):
    # Each unset limit keeps JupyterHub's default.
    if limits["concurrent_spawns"] is not None:
        c.JupyterHub.concurrent_spawn_limit = limits["concurrent_spawns"]
    if limits["active_servers"] is not None:
        c.JupyterHub.active_server_limit = limits["active_servers"]
    if limits["consecutive_failures"] is not None:
        c.Spawner.consecutive_failure_limit = limits["consecutive_failures"]
    if limits["named_servers"] is not None:
        c.JupyterHub.allow_named_servers = True
        c.JupyterHub.named_server_limit_per_user = limits["named_servers"]


def culler(services, roles, idle_timeout, cull):
    # Stop servers idle longer than the deployment's idle_timeout.
    command = [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={idle_timeout}"]
    scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
    if cull["every"] is not None:
        command.append(f"--cull-every={cull['every']}")
    if cull["max_age"] is not None:
        command.append(f"--max-age={cull['max_age']}")
    if cull["remove_named_servers"]:
        command.append("--remove-named-servers")
    if cull["users"]:
        command.append("--cull-users")
        scopes.append("admin:users")
    if not cull["admin_users"]:
        command.append("--cull-admin-users=false")
    if cull["concurrency"] is not None:
        command.append(f"--concurrency={cull['concurrency']}")
    services.append({"name": "idle-culler", "command": command})
    roles.append({"name": "idle-culler", "services": ["idle-culler"], "scopes": scopes})


def deployment_service(services, roles, service):
    # A swarm service of the deployment's: its token from its Docker
    # secret, its pages (with a url) routed at /services/NAME/ by the hub.
    entry = {"name": service["name"], "api_token": read_secret(service["token_path"])}
    if service["url"]:
        entry["url"] = service["url"]
    services.append(entry)
    if service["scopes"]:
        roles.append({"name": f"service-{service['name']}", "services": [service["name"]], "scopes": service["scopes"]})


def configure_branding(c, template_vars, extras):
    # Banners: every page's announcement, the login page's message; the
    # deployment's logo and templates (Docker configs) before JupyterHub's.
    c.JupyterHub.template_vars = template_vars
    if extras["logo_file"]:
        c.JupyterHub.logo_file = extras["logo_file"]
    if extras["template_paths"]:
        c.JupyterHub.template_paths = extras["template_paths"]
