# The spawner of a deployment's hub: rendered into its
# jupyterhub_config.py after the config's `import asyncio` and the
# deployment's values (USER_VOLUME, VOLUME_OPTIONS, VOLUME_LABELS, NOTEBOOK_DIR,
# SINGLEUSER_CONFIG, SINGLEUSER_CONFIG_DIR, USER_UID).
# tests/jupyterhub/spawner_check.py runs it against scripted engine answers.
from docker.errors import APIError
from docker.types import ConfigReference, DriverConfig, Mount, ServiceMode
from dockerspawner import SwarmSpawner

# Task states on the way to running, and running.
LIVE_TASK_STATES = {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"}
# How many more times (a second apart) a manager's 5xx is asked again.
MANAGER_RETRIES = 5


class HubgateSwarmSpawner(SwarmSpawner):
    """SwarmSpawner with per-user volumes, a stop that waits for the task,
    and no service left behind.

    - A manager that cannot answer (a 5xx while the swarm elects a leader)
      is an error, not a server that is gone: SwarmSpawner would report the
      server stopped, the hub would forget it and leave its service running.
    - A server is running while the swarm wants a task of it running (or
      ready: a replacement waiting out the restart delay) and that task is
      on its way to running or running: a task being rescheduled
      (`assigned`, `ready`, ...) is not a server that stopped. SwarmSpawner
      looks only at tasks wanted running, in some of those states, and a
      poll that landed in another made the hub forget a server the swarm
      was just moving to another node.
    - A stop scales the service to zero and waits for its task to end
      before the service goes (otherwise the container outlives the service
      by seconds, and a start right after can reach the old server); a task
      on a node that is down cannot report its end and is not waited for.
    - Whatever a stop found, the hub's stop ends with the service removed
      (`remove_leftover_service`, the post-stop hook): a server the hub
      forgot never keeps running, reachable, beside it.
    - Every server gets the deployment's jupyter_server configuration (a
      Docker config, SINGLEUSER_CONFIG) in a directory its
      JUPYTER_CONFIG_PATH names: it keeps the server from calling a
      restarted hub at its old address.
    """

    def get_env(self):
        env = super().get_env()
        env["JUPYTER_CONFIG_PATH"] = SINGLEUSER_CONFIG_DIR
        return env

    async def create_object(self):
        config = await self.docker("inspect_config", SINGLEUSER_CONFIG)
        reference = ConfigReference(
            config["ID"],
            SINGLEUSER_CONFIG,
            filename=f"{SINGLEUSER_CONFIG_DIR}/jupyter_server_config.py",
            uid=str(USER_UID),
            gid=str(USER_UID),
        )
        self.extra_container_spec = {**self.extra_container_spec, "configs": [reference]}
        return await super().create_object()

    @property
    def mounts(self):
        user = self.escaped_name
        options = {k: v.format(username=user) for k, v in VOLUME_OPTIONS.items()}
        return [
            Mount(
                target=NOTEBOOK_DIR,
                source=USER_VOLUME.format(username=user),
                type="volume",
                driver_config=DriverConfig("local", options),
                labels=VOLUME_LABELS,
            )
        ]

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

    async def live_tasks(self, service_id):
        """The service's tasks that may still run, but for those on nodes
        that are down (their last report stays `running` for good)."""
        tasks = await self.docker("tasks", filters={"service": service_id})
        live = [t for t in tasks if t["Status"]["State"] in LIVE_TASK_STATES]
        if not live:
            return []
        down = {
            n["ID"]
            for n in await self.docker("nodes")
            if n.get("Status", {}).get("State") == "down"
        }
        return [t for t in live if t.get("NodeID") not in down]

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
        for _ in range(150):
            if not await self.live_tasks(service["ID"]):
                break
            await asyncio.sleep(0.2)
        else:
            self.log.warning("%s: a task of %s still runs after 30 s", self._log_name, self.service_name)
        # No wait for the swarm's DNS to forget the name: with no task the
        # lookup is forwarded upstream (10 s where that does not answer),
        # hubgate routes by task address, and the hub's own connections to
        # a new server give up on a stale address after 3 s.

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


def remove_leftover_service(spawner):
    return spawner.remove_leftover_service()
