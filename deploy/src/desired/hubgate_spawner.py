"""hubgate's spawner, for a hub that `hubgate deploy` runs.

A module of its own (a Docker config mounted beside hubgate_hub.py, which
registers it): SwarmSpawner with per-user volumes and token secrets,
profiles, and the hooks. tests/jupyterhub/spawner_check.py imports it and
runs the spawner against scripted engine answers.
"""

import asyncio
import html
import os
import secrets

from docker.errors import APIError
from docker.types import ConfigReference, DriverConfig, Mount, SecretReference, ServiceMode
from dockerspawner import SwarmSpawner
from tornado import web
from traitlets import Dict, Integer, List, Unicode, default

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
# Task states SwarmSpawner waits through on the way to running.
STARTING_TASK_STATES = {"new", "assigned", "accepted", "starting", "pending", "preparing", "ready", "rejected"}
# How many looks, how many seconds apart, a stop waits for the old task to
# end: the swarm's 2 s before SIGTERM, then the server's 10 s grace period.
STOP_WAIT_LOOKS, STOP_LOOK_EVERY = 80, 0.25
# What the swarm says of a task no node has room for (GPUs, memory).
NO_ROOM = "insufficient resources"
# The environment keys of a server's API token: never in its spec.
TOKEN_ENV = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")


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
    - A stop scales the service to zero and returns once its task has
      ended (or its node is down): a server started right after, under
      the same name, is never taken for the old one still answering at
      its address (the hub's readiness check passed on the old container
      and hubgate routed to it, then to nothing, when it exited).
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
    unplaced_timeout = Integer(
        15, help="seconds a server may wait for a node with room for it before its spawn is refused"
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
        self.profile_name = profile["name"]
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

    async def start_object(self):
        """Waits for the server's task to run, as SwarmSpawner does; but a
        task no node has room for (the GPUs its profile reserves all in
        use) refuses the spawn after `unplaced_timeout` seconds, with the
        swarm's reason, rather than waiting out `start_timeout`."""
        waited, dt = 0.0, 0.5
        while True:
            task = await self.get_task()
            if not task:
                raise RuntimeError(f"Service {self.service_name} not found")
            status = task["Status"]
            state = status["State"].lower()
            if state not in STARTING_TASK_STATES:
                break
            if state == "pending" and NO_ROOM in (status.get("Err") or ""):
                if waited >= self.unplaced_timeout:
                    raise RuntimeError(self.no_room_message(status["Err"], waited))
            await asyncio.sleep(dt)
            waited += dt
            dt = min(dt * 1.5, 5)
        if state != "running":
            raise RuntimeError(f"Service {self.service_name} not running: {status}")

    def no_room_message(self, reason, waited):
        """Why a spawn was refused: no node has room for the server."""
        generic = (self.extra_resources_spec or {}).get("generic_resources") or {}
        wants = ", ".join(f"{n} {k}" for k, n in sorted(generic.items()))
        profile = getattr(self, "profile_name", None)
        text = f"no node has room for this server after {waited:.0f} s (the swarm: {reason})"
        if wants:
            text += f": the profile {profile} reserves {wants}, and every node that has them has them in use"
        return f"{text}; try again when a server stops"

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

    async def still_running(self, service_id):
        """The service's tasks whose containers may still answer: on their
        way to running or running, on a node that is up (a task on a node
        that is down never reports its end)."""
        tasks = await self.docker("tasks", filters={"service": service_id})
        live = [t for t in tasks if t["Status"]["State"] in LIVE_TASK_STATES]
        if not live:
            return []
        up = {n["ID"] for n in await self.docker("nodes") if n["Status"]["State"] == "ready"}
        return [t for t in live if t.get("NodeID") in up]

    async def stop_object(self):
        service = await self.get_object()
        if service is None:
            return
        try:
            await self.docker(
                "update_service",
                service["ID"],
                version=service["Version"]["Index"],
                mode=ServiceMode("replicated", replicas=0),
                fetch_current_spec=True,
            )
        except APIError as e:
            # JupyterHub logs nothing of a stop that raises: say it here.
            self.log.error("%s: cannot scale %s to zero: %s", self._log_name, self.service_name, e)
            raise
        # Stopped once the old container has ended. Until then it answers
        # at its address, which other nodes' DNS (the hub's readiness check
        # of a server started right after, under the same name) and
        # hubgate's view of the network can still hold: the swarm wants the
        # task shut down at once, but its node takes it out of DNS, waits
        # 2 s for that to spread, then sends SIGTERM. A task on a node that
        # is down is not waited for.
        for _ in range(STOP_WAIT_LOOKS):
            if not await self.still_running(service["ID"]):
                return
            await asyncio.sleep(STOP_LOOK_EVERY)
        self.log.warning(
            "%s: a task of %s still runs %.0f s after its stop",
            self._log_name,
            self.service_name,
            STOP_WAIT_LOOKS * STOP_LOOK_EVERY,
        )

    async def remove_leftover_service(self):
        try:
            if await self.get_object() is None:
                return
            self.log.info("%s stopped: removing its service %s", self._log_name, self.service_name)
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
