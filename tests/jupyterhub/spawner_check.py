"""Run the deployment's HubgateSwarmSpawner against scripted engine answers.

Usage: spawner_check.py MODULE_DIR (the folder of hubgate_hub.py and
hubgate_spawner.py)

The module is imported as the hub imports it; the spawner's methods then
run on a stand-in whose `docker` calls answer from a script instead of an
engine, so each case is exact: the task lists a swarm shows while it moves a server off a lost
node, a manager's 5xx, a service that is gone. Prints one line a case and
`N passed, N failed`; exits non-zero on a failure.
"""

import asyncio
import logging
import socket
import sys
import types

from docker.errors import APIError


def load(module_dir):
    """hubgate's spawner module (imported by its JupyterHub module, as the
    hub imports them), with no real waits and no DNS."""
    sys.path.insert(0, module_dir)
    import hubgate_hub
    import hubgate_spawner

    async def no_wait(_seconds):
        pass

    class Loop:
        async def getaddrinfo(self, *_args):
            raise socket.gaierror("no such name")

    quick = types.SimpleNamespace(sleep=no_wait, get_running_loop=Loop)
    hubgate_hub.asyncio = quick
    hubgate_spawner.asyncio = quick
    # The spawner's module, the hub's having imported it.
    return hubgate_spawner


def api_error(status):
    response = types.SimpleNamespace(status_code=status, reason="scripted", url="http://engine/")
    return APIError(f"{status} scripted", response=response)


def task(desired, state, node="n1"):
    return {"DesiredState": desired, "Status": {"State": state}, "NodeID": node}


SERVICE = {"ID": "svc1", "Version": {"Index": 7}}


class Engine:
    """Answers `docker(method, ...)` calls from a script: a method maps to
    a list of answers taken in turn (the last one repeats); an answer that
    is an exception is raised."""

    def __init__(self, script):
        self.script = {k: list(v) for k, v in script.items()}
        self.calls = []

    async def __call__(self, method, *args, **kwargs):
        self.calls.append((method, args, kwargs))
        answers = self.script[method]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def count(self, method):
        return sum(1 for m, _, _ in self.calls if m == method)


def stand_in(hub, script):
    spawner = hub.HubgateSwarmSpawner
    engine = Engine(script)
    methods = ["get_object", "poll", "poll_swarm", "still_running", "stop_object"]
    methods += ["remove_object", "remove_leftover_service", "remove_token_secrets", "token_labels"]
    cls = type("StandIn", (), {m: getattr(spawner, m) for m in methods if hasattr(spawner, m)})
    s = cls()
    s.docker = engine
    s.object_type = "service"
    s.service_name = "jupyter-alice"
    s.object_id = "stale-id"  # get_object must set or clear it
    s.token_secret = {"labels": {"spawned": "jhub"}, "server_label": "server", "prefix": "jhub-token-", "file": "t"}
    s._log_name = "alice"
    s.log = logging.getLogger("spawner_check")
    return s, engine


def poll_of(hub, tasks):
    s, _ = stand_in(hub, {"inspect_service": [SERVICE], "tasks": [tasks]})
    return asyncio.run(s.poll())


def inspections_before_an_error(hub, status):
    """How many times a poll asks an engine that always answers `status`
    before it gives up: it raises a 4xx, and counts a server it cannot
    learn about from a 5xx as running (no answer is not a stopped server)."""
    s, engine = stand_in(hub, {"inspect_service": [api_error(status)]})
    try:
        outcome = asyncio.run(s.poll())
    except APIError:
        assert status < 500, f"a poll raised the engine's {status}"
        return engine.count("inspect_service")
    assert status >= 500 and outcome is None, f"a poll read an engine answering {status} as {outcome!r}"
    return engine.count("inspect_service")


NODES = [{"ID": "n1", "Status": {"State": "ready"}}, {"ID": "n2", "Status": {"State": "ready"}}]
LOST = {"ID": "lost", "Status": {"State": "down"}}


class LogsOf(logging.Handler):
    """The messages a logger takes while in the `with` block."""

    def __init__(self, logger):
        super().__init__()
        self.logger, self.messages = logger, []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        self.saved = self.logger.level, self.logger.propagate
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self.logger.addHandler(self)
        return self.messages

    def __exit__(self, *_exc):
        self.logger.removeHandler(self)
        self.logger.level, self.logger.propagate = self.saved


def stop_with(hub, task_lists, nodes=NODES):
    """Runs `stop_object` with the task lists the engine shows in turn."""
    script = {"inspect_service": [SERVICE], "update_service": [None], "tasks": task_lists, "nodes": [nodes]}
    s, engine = stand_in(hub, script)
    asyncio.run(s.stop_object())
    return engine


def cases(hub):
    retries = hub.MANAGER_RETRIES

    def moving_off_a_lost_node():
        # The old task stays `running` on the dead node, wanted shut down;
        # the replacement waits out the restart delay, wanted ready.
        tasks = [task("shutdown", "running", "lost"), task("ready", "new", "n2")]
        assert poll_of(hub, tasks) is None

    def replacement_ready_to_start():
        # What SwarmSpawner's poll took for a stopped server.
        tasks = [task("shutdown", "running", "lost"), task("running", "ready", "n2")]
        assert poll_of(hub, tasks) is None

    def every_state_on_the_way_counts():
        for state in ["new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"]:
            assert poll_of(hub, [task("running", state)]) is None, state

    def an_ended_task_is_a_stopped_server():
        for state in ["complete", "failed", "shutdown", "rejected", "orphaned"]:
            status = poll_of(hub, [task("running", state)])
            assert status is not None and state in status, (state, status)

    def a_scaled_down_service_is_stopped():
        status = poll_of(hub, [task("shutdown", "shutdown"), task("shutdown", "complete")])
        assert status is not None and "none wanted" in status, status

    def a_removed_service_is_stopped():
        s, _ = stand_in(hub, {"inspect_service": [api_error(404)]})
        assert asyncio.run(s.poll()) == 0
        assert s.object_id == ""

    def a_manager_5xx_is_asked_again():
        s, engine = stand_in(
            hub, {"inspect_service": [api_error(500), api_error(503), SERVICE], "tasks": [[task("running", "running")]]}
        )
        assert asyncio.run(s.poll()) is None
        assert engine.count("inspect_service") == 3

    def a_lasting_5xx_leaves_the_server_running_not_stopped():
        assert inspections_before_an_error(hub, 500) == retries + 1

    def an_unreachable_engine_leaves_the_server_running():
        s, _ = stand_in(hub, {"inspect_service": [ConnectionError("no engine")]})
        assert asyncio.run(s.poll()) is None

    def a_4xx_is_not_asked_again():
        assert inspections_before_an_error(hub, 400) == 1

    def a_stop_scales_to_zero_and_returns_once_the_task_has_ended():
        # Still wanted running on the first look; then wanted shut down,
        # its container still running (and answering at its address: a
        # server started right after was taken for it); then ended.
        looks = [[task("running", "running")], [task("shutdown", "running")], [task("shutdown", "shutdown")]]
        engine = stop_with(hub, looks)
        (_, args, kwargs), = [c for c in engine.calls if c[0] == "update_service"]
        assert args == ("svc1",) and kwargs["version"] == 7, (args, kwargs)
        assert (kwargs["mode"].mode, kwargs["mode"].replicas) == ("replicated", 0), kwargs["mode"]
        assert engine.count("tasks") == 3, engine.count("tasks")

    def a_stop_does_not_wait_for_a_lost_node():
        # A task on a node that is down stays `running` for good.
        looks = [[task("shutdown", "running", "lost"), task("shutdown", "shutdown", "n2")]]
        engine = stop_with(hub, looks, [*NODES, LOST])
        assert engine.count("tasks") == 1

    def a_refused_scale_down_is_logged_and_raised():
        # JupyterHub logs nothing of a stop that raises (the guard refused
        # every one for a field the engine fills in, and nobody saw).
        script = {"inspect_service": [SERVICE], "update_service": [api_error(403)]}
        s, _ = stand_in(hub, script)
        with LogsOf(s.log) as logged:
            try:
                asyncio.run(s.stop_object())
            except APIError:
                pass
            else:
                raise AssertionError("a refused scale-down was not raised")
        assert any("cannot scale jupyter-alice to zero" in m for m in logged), logged

    def a_task_that_never_ends_is_waited_for_a_bounded_time():
        engine = stop_with(hub, [[task("shutdown", "running")]])
        assert engine.count("tasks") == hub.STOP_WAIT_LOOKS, engine.count("tasks")

    def a_leftover_service_is_removed_with_its_token_secrets():
        secrets = [[{"ID": "t1"}, {"ID": "t2"}]]
        script = {"inspect_service": [SERVICE], "remove_service": [None], "secrets": secrets}
        s, engine = stand_in(hub, {**script, "remove_secret": [None, api_error(404)]})
        asyncio.run(s.remove_leftover_service())
        assert [a for m, a, _ in engine.calls if m == "remove_service"] == [("svc1",)]
        # Listed by the deployment's label and the server's.
        assert [k["filters"] for m, _, k in engine.calls if m == "secrets"] == [
            {"label": ["spawned=jhub", "server=jupyter-alice"]}
        ]
        assert [a for m, a, _ in engine.calls if m == "remove_secret"] == [("t1",), ("t2",)]

    def no_service_nothing_to_remove():
        s, engine = stand_in(hub, {"inspect_service": [api_error(404)]})
        asyncio.run(s.remove_leftover_service())
        assert engine.count("remove_service") == 0

    def a_manager_that_never_answers_leaves_the_hook_logging_not_raising():
        s, engine = stand_in(hub, {"inspect_service": [api_error(500)]})
        asyncio.run(s.remove_leftover_service())
        assert engine.count("inspect_service") == retries + 1
        assert engine.count("remove_service") == 0

    def the_hook_calls_the_spawner():
        s, engine = stand_in(hub, {"inspect_service": [api_error(404)]})
        asyncio.run(hub.remove_leftover_service(s))
        assert engine.count("inspect_service") == 1

    def a_starting_hub_waits_longer_for_a_running_server_than_a_spawn():
        # A hub that starts checks the servers it had (JupyterHub stops one
        # that does not answer within http_timeout); on a manager whose
        # overlay paths are still coming back that took servers the swarm
        # ran. A spawn waits as configured.
        s = hub.HubgateSwarmSpawner(http_timeout=60, startup_http_timeout=900)
        assert s.http_timeout == 900, s.http_timeout
        started = []

        async def spawned(self):
            started.append(self.http_timeout)
            return ("10.0.0.5", 8888)

        saved = hub.SwarmSpawner.__dict__.get("start")
        hub.SwarmSpawner.start = spawned
        try:
            asyncio.run(s.start())
        finally:
            if saved is None:
                del hub.SwarmSpawner.start
            else:
                hub.SwarmSpawner.start = saved
        assert started == [60] and s.http_timeout == 60, (started, s.http_timeout)

    def a_volume_named_by_its_storage():
        # A storage that moves gets new names: Docker reuses a volume by
        # name, old options and all, on a node that has one.
        s = types.SimpleNamespace(
            escaped_name="alice",
            notebook_dir="/home/jovyan/work",
            user_volume="check-user-0123abcd-{username}",
            volume_options={"type": "none", "o": "bind", "device": "/srv/users/{username}"},
            volume_labels={"hubgate.deploy": "check"},
            data_mounts=[
                {
                    "source": "check-data-89abcdef",
                    "target": "/home/jovyan/datasets",
                    "read_only": True,
                    "driver": "local",
                    "options": {"type": "none", "o": "bind", "device": "/srv/users/datasets"},
                    "labels": {"hubgate.deploy": "check", "hubgate.deploy.role": "data"},
                }
            ],
        )
        mount, data = hub.HubgateSwarmSpawner.mounts.fget(s)
        assert mount["Source"] == "check-user-0123abcd-alice", mount
        assert mount["VolumeOptions"]["DriverConfig"]["Options"]["device"] == "/srv/users/alice"
        # The shared data beside it, read-only, its options in the mount.
        assert data["Source"] == "check-data-89abcdef" and data["ReadOnly"] is True, data
        assert data["VolumeOptions"]["DriverConfig"]["Options"]["device"] == "/srv/users/datasets"

    def a_profile_is_chosen_among_those_the_user_may():
        def profile(name, default=False, groups=()):
            return {"name": name, "display_name": name.title(), "description": "", "default": default,
                    "allowed_users": [], "allowed_groups": list(groups)}

        profiles = [profile("small"), profile("gpu", default=True, groups=["gpu-users"])]

        def spawner(groups, options):
            user = types.SimpleNamespace(name="alice", groups=[types.SimpleNamespace(name=g) for g in groups])
            s = types.SimpleNamespace(profiles=profiles, user=user, user_options=options)
            s.allowed_profiles = types.MethodType(hub.HubgateSwarmSpawner.allowed_profiles, s)
            return s

        chosen = hub.HubgateSwarmSpawner.chosen_profile
        # The default is one the user may choose, else the first they may.
        assert chosen(spawner(["gpu-users"], {}))["name"] == "gpu"
        assert chosen(spawner([], {}))["name"] == "small"
        assert chosen(spawner([], {"profile": "small"}))["name"] == "small"
        try:
            chosen(spawner([], {"profile": "gpu"}))
        except hub.web.HTTPError as e:
            assert e.status_code == 403, e
        else:
            raise AssertionError("a profile of another group was given")
        form = hub.profile_form(spawner([], {}))
        assert 'value="small" checked' in form and 'value="gpu"' not in form, form

    def a_server_no_node_has_room_for_is_refused():
        # Every GPU in use: the swarm keeps the task pending; the spawn is
        # refused with the swarm's reason after unplaced_timeout, not after
        # start_timeout. A task that runs within it is started.
        def start(tasks, generic=None):
            s, engine = stand_in(hub, {"tasks": [tasks]})
            s.start_object = types.MethodType(hub.HubgateSwarmSpawner.start_object, s)
            s.no_room_message = types.MethodType(hub.HubgateSwarmSpawner.no_room_message, s)
            s.unplaced_timeout = 15
            s.extra_resources_spec = {"generic_resources": generic} if generic else {}
            s.profile_name = "gpu"

            async def get_task():
                # A spawner that never gives up would loop here for good
                # (its sleeps are no-ops): bounded, it fails instead.
                if engine.count("tasks") >= 200:
                    raise AssertionError("still waiting after 200 looks at the task")
                answer = await engine("tasks")
                return answer[0] if answer else None

            s.get_task = get_task
            asyncio.run(s.start_object())
            return engine

        pending = dict(task("running", "pending"), Status={
            "State": "pending", "Err": "no suitable node (insufficient resources on 1 node)"})
        try:
            start([pending], {"NVIDIA-GPU": 1})
        except RuntimeError as e:
            text = str(e)
            assert "reserves 1 NVIDIA-GPU" in text and "insufficient resources on 1 node" in text, text
        else:
            raise AssertionError("a server no node has room for was waited for")
        engine = Engine({"tasks": [[pending]] * 3 + [[task("running", "running")]]})
        s, _ = stand_in(hub, {})
        s.docker = engine
        s.start_object = types.MethodType(hub.HubgateSwarmSpawner.start_object, s)
        s.unplaced_timeout = 15

        async def get_task():
            return (await engine("tasks"))[0]

        s.get_task = get_task
        asyncio.run(s.start_object())
        assert engine.count("tasks") == 4, engine.calls

    return [v for v in locals().values() if callable(v)]


def main():
    logging.basicConfig(level=logging.CRITICAL)
    hub = load(sys.argv[1])
    passed = failed = 0
    for case in cases(hub):
        try:
            case()
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failed += 1
            print(f"FAIL {case.__name__}: {type(e).__name__}: {e}")
        else:
            passed += 1
            print(f"ok   {case.__name__}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
