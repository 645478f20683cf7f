"""hubgate's JupyterHub configuration, for a hub that `hubgate deploy` runs.

A module of its own (a Docker config mounted beside the hub's
jupyterhub_config.py): the proxy and spawner classes, the hooks, and
`configure(c, values)`, which registers them and sets the hub up from the
deployment's values. The generated jupyterhub_config.py holds only those
values and calls `configure`; this file holds no value of a deployment.
tests/jupyterhub/spawner_check.py imports it and runs the spawner against
scripted engine answers; tests/jupyterhub/config_check.py loads rendered
configurations through it.
"""

import asyncio
import html
import json
import os
import secrets
import socket
import sys

import aiohttp
import aiohttp.connector
import aiohttp.resolver
from aiohttp import ClientResponseError
from docker.errors import APIError
from docker.types import ConfigReference, DriverConfig, Mount, SecretReference, ServiceMode
from dockerspawner import SwarmSpawner
from jupyterhub.httpclient import fetch
from jupyterhub.proxy import ConfigurableHTTPProxy
from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import Dict, Float, Integer, List, Unicode, default

# Task states on the way to running, and running.
LIVE_TASK_STATES = {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"}
# How many more times (a second apart) a manager's 5xx is asked again.
MANAGER_RETRIES = 5
# The spawner's resource traits, and the deployment's names for them.
RESOURCE_TRAITS = {
    "cpu_limit": "cpu_limit",
    "mem_limit": "memory_limit",
    "cpu_guarantee": "cpu_reservation",
    "mem_guarantee": "memory_reservation",
}
# The environment keys of a server's API token: never in its spec.
TOKEN_ENV = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")


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


class HubgateSwarmSpawner(SwarmSpawner):
    """SwarmSpawner with per-user volumes, a stop that waits for the task,
    and no service left behind.

    - A manager that cannot answer (a 5xx while the swarm elects a leader,
      which it does after losing the node the hub ran on) is asked again
      for a few seconds; a poll it still cannot answer counts the server
      as running, never as gone. SwarmSpawner reported it stopped, and a
      hub starting on another manager (which polls every server) forgot
      it and left its service running.
    - A server is running while the swarm wants a task of it running (or
      ready: a replacement waiting out the restart delay) and that task is
      on its way to running or running: a task being rescheduled
      (`assigned`, `ready`, ...) is not a server that stopped. SwarmSpawner
      looks only at tasks wanted running, in some of those states, and a
      poll that landed in another made the hub forget a server the swarm
      was just moving to another node.
    - A stop scales the service to zero and returns once the swarm wants
      its task shut down (unreachable from then on: out of DNS, and hubgate
      routes only tasks wanted running), without waiting the seconds the
      container takes to end.
    - Whatever a stop found, the hub's stop ends with the service removed
      (`remove_leftover_service`, the post-stop hook): a server the hub
      forgot never keeps running, reachable, beside it.
    - A hub that starts (after a failover, or on a manager whose daemon
      has just restarted, whose overlay paths to the workers can take
      minutes to come back) gives a server the swarm runs
      `startup_http_timeout` seconds to answer it before JupyterHub's
      check gives the server up and stops it (`http_timeout`, 60 s, killed
      running servers the swarm, and hubgate's routes, still had).
      Spawns use `http_timeout` as configured.
    - Every server gets the deployment's jupyter_server configuration (a
      Docker config, `singleuser_config`) in a directory its
      JUPYTER_CONFIG_PATH names: it keeps the server from calling a
      restarted hub at its old address.
    - A server's API token is not in its service's spec (where anyone
      reading services saw it): it is a Docker secret of its own, made at
      spawn and removed with the service, whose file the server's
      configuration reads into the environment (HUBGATE_API_TOKEN_FILE
      names it).
    - With `profiles`, the spawn page offers those a user may choose; the
      chosen one (or the default) sets the server's image, resources,
      placement and generic resources (GPUs).
    """

    storage = Unicode(help="the whole storage, mounted in the hub").tag(config=True)
    user_uid = Integer(1000, help="the uid (and gid) user servers run as").tag(config=True)
    user_volume = Unicode(help="a user's volume name, {username} in place").tag(config=True)
    volume_options = Dict(help="the local driver's options, {username} in place").tag(config=True)
    volume_labels = Dict(help="labels of the user volumes").tag(config=True)
    singleuser_config = Unicode(help="the Docker config of the servers' configuration").tag(config=True)
    singleuser_config_dir = Unicode(help="where servers find that configuration").tag(config=True)
    startup_http_timeout = Integer(
        900, help="seconds a starting hub waits for a running server to answer it"
    ).tag(config=True)
    token_secret = Dict(
        help="each server's token secret: its name's prefix, labels, server_label and file"
    ).tag(config=True)
    data_mounts = List(
        help="shared data volumes every server mounts: source, target, read_only, driver, options, labels"
    ).tag(config=True)
    profiles = List(
        help="the environments users choose from: name, display_name, description, image, "
        "resources, constraints, generic_resources, default, allowed_users, allowed_groups"
    ).tag(config=True)

    @default("options_form")
    def _profile_form(self):
        return profile_form if self.profiles else ""

    def options_from_form(self, formdata):
        return {"profile": formdata.get("profile", [""])[0]}

    def allowed_profiles(self):
        """The profiles this user may choose."""
        groups = {g.name for g in self.user.groups}
        return [
            p
            for p in self.profiles
            if not (p["allowed_users"] or p["allowed_groups"])
            or self.user.name in p["allowed_users"]
            or groups & set(p["allowed_groups"])
        ]

    def chosen_profile(self):
        """The profile the spawn asks for, or the default one."""
        allowed = self.allowed_profiles()
        name = (self.user_options or {}).get("profile")
        if name:
            chosen = next((p for p in allowed if p["name"] == name), None)
            if chosen is None:
                raise web.HTTPError(403, f"{self.user.name} may not choose the profile {name!r}")
            return chosen
        chosen = next((p for p in allowed if p["default"]), allowed[0] if allowed else None)
        if chosen is None:
            raise web.HTTPError(403, f"{self.user.name} may choose none of the deployment's profiles")
        return chosen

    def apply_profile(self, profile):
        self.image = profile["image"]
        for trait, key in RESOURCE_TRAITS.items():
            # 0: none (the engine's "no limit"; SwarmSpawner leaves it out).
            setattr(self, trait, profile["resources"].get(key) or 0)
        self.extra_placement_spec = {"constraints": profile["constraints"]} if profile["constraints"] else {}
        generic = profile["generic_resources"]
        self.extra_resources_spec = {"generic_resources": generic} if generic else {}
        self.data_mounts = profile["mounts"]
        self.log.info("%s: profile %s (%s)", self._log_name, profile["name"], profile["image"])

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Until this spawner starts a server, the server it may have is one
        # a starting hub checks: it gets the longer wait.
        self.spawn_http_timeout = self.http_timeout
        self.http_timeout = max(self.http_timeout, self.startup_http_timeout)

    async def start(self):
        self.http_timeout = self.spawn_http_timeout
        if self.profiles:
            self.apply_profile(self.chosen_profile())
        return await super().start()

    def get_env(self):
        env = super().get_env()
        env["JUPYTER_CONFIG_PATH"] = self.singleuser_config_dir
        for key in TOKEN_ENV:
            env.pop(key, None)
        env["HUBGATE_API_TOKEN_FILE"] = f"/run/secrets/{self.token_secret['file']}"
        return env

    async def create_object(self):
        config = await self.docker("inspect_config", self.singleuser_config)
        ids = dict(uid=str(self.user_uid), gid=str(self.user_uid))
        configs = [
            ConfigReference(
                config["ID"],
                self.singleuser_config,
                filename=f"{self.singleuser_config_dir}/jupyter_server_config.py",
                **ids,
            )
        ]
        await self.remove_token_secrets()
        token = await self.make_token_secret()
        tokens = [SecretReference(token["ID"], token["Name"], filename=self.token_secret["file"], mode=0o400, **ids)]
        self.extra_container_spec = {**self.extra_container_spec, "configs": configs, "secrets": tokens}
        return await super().create_object()

    def token_labels(self):
        return {**self.token_secret["labels"], self.token_secret["server_label"]: self.service_name}

    async def make_token_secret(self):
        """This server's API token as a Docker secret of its own."""
        name = f"{self.token_secret['prefix']}{secrets.token_hex(8)}"
        made = await self.docker("create_secret", name, self.api_token.encode(), labels=self.token_labels())
        return {"ID": made["ID"], "Name": name}

    async def remove_token_secrets(self):
        """Removes this server's token secrets (one in use by a service the
        swarm still has is left to the next removal)."""
        labels = [f"{k}={v}" for k, v in self.token_labels().items()]
        for secret in await self.docker("secrets", filters={"label": labels}):
            try:
                await self.docker("remove_secret", secret["ID"])
            except APIError as e:
                status = e.response.status_code if e.response is not None else None
                if status != 404:
                    self.log.warning("%s: cannot remove its token secret %s: %s", self._log_name, secret["ID"], e)

    async def remove_object(self):
        """Removes the service, then its token secrets (in use until then)."""
        self.log.info("Removing service %s", self.object_id)
        await self.docker("remove_service", self.object_id)
        await self.remove_token_secrets()

    @property
    def mounts(self):
        user = self.escaped_name
        options = {k: v.format(username=user) for k, v in self.volume_options.items()}
        own = Mount(
            target=self.notebook_dir,
            source=self.user_volume.format(username=user),
            type="volume",
            driver_config=DriverConfig("local", options),
            labels=self.volume_labels,
        )
        shared = [
            Mount(
                target=m["target"],
                source=m["source"],
                type="volume",
                read_only=m["read_only"],
                driver_config=DriverConfig(m["driver"], m["options"]),
                labels=m["labels"],
            )
            for m in self.data_mounts
        ]
        return [own, *shared]

    def prepare_user_directory(self):
        """The user's directory on the storage, owned by the server's uid."""
        path = os.path.join(self.storage, self.escaped_name)
        os.makedirs(path, exist_ok=True)
        os.chown(path, self.user_uid, self.user_uid)

    async def get_object(self):
        # A manager's 5xx (no leader yet, a lost peer) is asked again for a
        # few seconds, then raised: never taken for a service that is gone.
        for attempt in range(MANAGER_RETRIES + 1):
            try:
                service = await self.docker("inspect_service", self.service_name)
            except APIError as e:
                status = e.response.status_code if e.response is not None else None
                if status == 404:
                    self.log.info("Service %r is gone", self.service_name)
                    self.object_id = ""
                    return None
                if status is None or status < 500 or attempt == MANAGER_RETRIES:
                    raise
                self.log.warning("%s: the swarm manager answered %s; asking again", self._log_name, e)
                await asyncio.sleep(1)
            else:
                self.object_id = service["ID"]
                return service

    async def poll(self):
        try:
            return await self.poll_swarm()
        except (APIError, OSError) as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status is not None and status < 500:
                raise
            self.log.warning("%s: the swarm cannot say (%s); the server counts as running", self._log_name, e)
            return None

    async def poll_swarm(self):
        service = await self.get_object()
        if service is None:
            return 0
        tasks = await self.docker("tasks", filters={"service": service["ID"]})
        # Desired `ready`: a replacement the swarm starts after its restart
        # delay (a task moved off a lost node waits there for 5 s).
        wanted = [t for t in tasks if t.get("DesiredState") in ("running", "ready")]
        if any(t["Status"]["State"] in LIVE_TASK_STATES for t in wanted):
            return None
        states = sorted({t["Status"]["State"] for t in wanted})
        return f"service {self.service_name}: no live task ({', '.join(states) or 'none wanted'})"

    async def wanted_running(self, service_id):
        """The service's tasks the swarm still wants running (or ready)."""
        tasks = await self.docker("tasks", filters={"service": service_id})
        return [t for t in tasks if t.get("DesiredState") in ("running", "ready")]

    async def stop_object(self):
        service = await self.get_object()
        if service is None:
            return
        await self.docker(
            "update_service",
            service["ID"],
            version=service["Version"]["Index"],
            mode=ServiceMode("replicated", replicas=0),
            fetch_current_spec=True,
        )
        # Stopped once the swarm wants its task shut down: it takes the task
        # out of the service's DNS at once, and hubgate routes only tasks
        # the swarm wants running, so nothing reaches the old server after
        # this (even a start right after, under the same name). The
        # container itself ends seconds later: the swarm waits 2 s for its
        # gossip to converge before it sends SIGTERM, and a task on a node
        # that is down never reports its end; neither is waited for.
        for _ in range(100):
            if not await self.wanted_running(service["ID"]):
                return
            await asyncio.sleep(0.1)
        self.log.warning("%s: the swarm still wants a task of %s running after 10 s", self._log_name, self.service_name)

    async def remove_leftover_service(self):
        try:
            if await self.get_object() is None:
                return
            self.log.warning(
                "%s stopped, but its service %s is still there: removing it",
                self._log_name,
                self.service_name,
            )
            await self.remove_object()
        except APIError as e:
            self.log.error("%s: cannot remove a leftover service %s: %s", self._log_name, self.service_name, e)


def profile_form(spawner):
    """The spawn page's choice: one radio button a profile the user may
    choose, the default checked."""
    allowed = spawner.allowed_profiles()
    chosen = next((p for p in allowed if p["default"]), allowed[0] if allowed else None)
    items = []
    for p in allowed:
        checked = " checked" if p is chosen else ""
        items.append(
            f'<label class="hubgate-profile"><input type="radio" name="profile" '
            f'value="{html.escape(p["name"])}"{checked}> <strong>{html.escape(p["display_name"])}</strong>'
            f"<br><span>{html.escape(p['description'])}</span></label>"
        )
    return "<br>".join(items)


def prepare_user_directory(spawner):
    """The pre-spawn hook."""
    spawner.prepare_user_directory()


def remove_leftover_service(spawner):
    """The post-stop hook."""
    return spawner.remove_leftover_service()


def configure(c, values):
    """Sets the hub up for a deployment: `values` as `hubgate deploy`
    renders them into jupyterhub_config.py (deploy/src/desired/hub_config.rs)."""
    configure_clients(c)
    configure_hub(c, values["hub"])
    configure_proxy(c, values["proxy"])
    configure_spawner(c, values["spawner"])
    configure_auth(c, values["auth"])
    configure_limits(c, values["limits"])
    # Banners: every page's announcement, the login page's message.
    c.JupyterHub.template_vars = values["template_vars"]
    if values.get("idle_timeout"):
        configure_culler(c, values["idle_timeout"], values["cull"])


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


def configure_culler(c, idle_timeout, cull):
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
    c.JupyterHub.services = [{"name": "idle-culler", "command": command}]
    c.JupyterHub.load_roles = [{"name": "idle-culler", "services": ["idle-culler"], "scopes": scopes}]
