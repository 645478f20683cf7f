"""Run hubgate's hub entrypoint (hubgate_lease.py) as real processes and
check its fencing: never two servers at once.

Usage: lease_check.py MODULE_DIR [--postgres]
(MODULE_DIR: the folder of hubgate_lease.py)

Each case starts two or three entrypoints on one lease (a sqlite file;
with --postgres, every case again on a table of a real PostgreSQL server,
tests/jupyterhub/postgres.py), each
with a stand-in for its node's Docker engine (a unix socket this script
answers `/_ping` on, or stops answering) and a stand-in for JupyterHub
(`python -m http.server` on a port of its own). A prober connects to every
port every 20 ms: two answering at one moment is a failure. The lease's
times are scaled down (ttl 2 s) so a case takes seconds. Prints one line a
case and `N passed, N failed`; exits non-zero on a failure.
"""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

import postgres

TIMES = ["--renew", "0.2", "--ttl", "2", "--term", "1", "--kill", "1.6", "--handoff", "0.8", "--grace", "0.5"]
TTL = 2.0
# Every task a case started: main stops them all after the case.
STARTED = []


class Engine:
    """A node's Docker engine as the entrypoint sees it: `/_ping` answered
    while `up`, a connection left hanging (a frozen daemon) when not."""

    def __init__(self, path):
        self.path = path
        self.up = True
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(16)
        self.held = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if self.up:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                conn.close()
            else:
                self.held.append(conn)


def children(pid):
    """The child processes of `pid`."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Peer:
    """A stand-in for one hubgate task's API: a port on a loopback address
    that accepts connections once `listen` is called."""

    def __init__(self, host):
        self.host = host
        self.port = free_port(host)
        self.server = None

    def listen(self):
        self.server = socket.socket()
        self.server.bind((self.host, self.port))
        self.server.listen(64)
        STARTED.append(self)
        return self

    def stop(self):
        self.server.close()

    def __str__(self):
        return f"{self.host}:{self.port}"


class SqliteLease:
    """The lease as a sqlite file in the case's directory."""

    kind = "sqlite"

    def __init__(self, work):
        self.path = f"{work}/lease/lease.sqlite"
        self.args = ["--store", f"sqlite:///{self.path}"]

    def lock(self):
        """Holds the whole store locked until `unlock`."""
        self.held = sqlite3.connect(self.path, isolation_level=None)
        self.held.execute("BEGIN EXCLUSIVE")

    def unlock(self):
        self.held.execute("COMMIT")
        self.held.close()


class PostgresLease:
    """The lease as a table of a real PostgreSQL server, new each case."""

    kind = "postgresql"

    def __init__(self, server, work):
        import psycopg2  # noqa: PLC0415 - only the --postgres run needs it

        self.connect = lambda: psycopg2.connect(server["url"], password=read(server["password_file"]))
        self.args = ["--store", server["url"], "--password-file", server["password_file"], "--pgpass-dir", work]
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS hubgate_lease")

    def lock(self):
        self.held = self.connect()
        self.held.cursor().execute("LOCK TABLE hubgate_lease IN ACCESS EXCLUSIVE MODE")

    def unlock(self):
        self.held.commit()
        self.held.close()


def read(path):
    with open(path) as f:
        return f.read().strip()


class Task:
    """One hub task: the entrypoint, its engine and its server's port."""

    def __init__(self, case, name, generation="g1", peers=()):
        module_dir, work, lease = case
        self.name = name
        self.port = free_port()
        self.engine = Engine(os.path.join(work, f"{name}.sock"))
        command = [
            sys.executable,
            os.path.join(module_dir, "hubgate_lease.py"),
            *lease.args,
            "--docker-socket",
            self.engine.path,
            "--holder",
            name,
            "--generation",
            generation,
            *(["--peers", ",".join(map(str, peers))] if peers else []),
            *TIMES,
            "--",
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            str(self.port),
        ]
        self.log = open(os.path.join(work, f"{name}.log"), "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=self.log, start_new_session=True)
        STARTED.append(self)

    def serving(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def kill(self):
        """Kills the entrypoint and the server it started (its own process
        group), as the end of a container's PID 1 would."""
        for pid in [self.proc.pid, *children(self.proc.pid)]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self):
        if self.proc.poll() is None:
            self.kill()
        self.proc.wait(timeout=10)
        self.kill()
        self.log.close()

    def output(self):
        with open(self.log.name) as f:
            return f.read()


class Prober:
    """Which tasks serve, every 20 ms: the moments two did, and when each
    task first and last served."""

    def __init__(self, tasks):
        self.tasks = tasks
        self.both = []
        self.first = {}
        self.last = {}
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            now = time.monotonic()
            serving = [t.name for t in self.tasks if t.serving()]
            if len(serving) > 1:
                self.both.append((now, serving))
            for name in serving:
                self.first.setdefault(name, now)
                self.last[name] = now
            time.sleep(0.02)

    def stop(self):
        self.running = False
        self.thread.join()


def wait_until(what, condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {what}")


def case_standby_waits(case):
    a = Task(case, "a")
    wait_until("a serves", a.serving, 10)
    b = Task(case, "b")
    probe = Prober([a, b])
    time.sleep(3 * TTL)
    probe.stop()
    assert "b" not in probe.first, "the standby served while the holder renewed"
    assert not probe.both, probe.both
    return "the standby waited 3 ttl while the holder renewed"


def case_frozen_engine(case):
    a = Task(case, "a")
    wait_until("a serves", a.serving, 10)
    b = Task(case, "b")
    time.sleep(1)
    probe = Prober([a, b])
    frozen = time.monotonic()
    a.engine.up = False
    wait_until("b serves", lambda: "b" in probe.first, 15)
    probe.stop()
    assert not probe.both, f"two served at once: {probe.both[:3]}"
    assert "stopped before the lease" in a.output(), a.output()
    gap = probe.first["b"] - probe.last["a"]
    return (
        f"a's engine froze: a stopped after {probe.last['a'] - frozen:.1f} s, "
        f"b served after {probe.first['b'] - frozen:.1f} s, never both (gap {gap:.1f} s)"
    )


def case_hand_over(case):
    a = Task(case, "a", generation="old")
    wait_until("a serves", a.serving, 10)
    same = Task(case, "same", generation="old")
    new = Task(case, "new", generation="new")
    time.sleep(1)
    probe = Prober([a, same, new])
    a.proc.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    wait_until("a ends", lambda: a.proc.poll() is not None, 5)
    wait_until("the new generation serves", lambda: "new" in probe.first, 5)
    time.sleep(2)
    probe.stop()
    assert a.proc.returncode == 0, a.output()
    assert "released the lease" in a.output(), a.output()
    assert "same" not in probe.first, "a standby of the old generation took the lease"
    assert not probe.both, probe.both
    return f"a stopped: the new generation served after {probe.first['new'] - stopped:.1f} s"


def case_holder_killed(case):
    a = Task(case, "a")
    wait_until("a serves", a.serving, 10)
    b = Task(case, "b")
    time.sleep(1)
    killed = time.monotonic()
    a.kill()
    took = wait_until("b serves", b.serving, 15) - killed
    assert TTL - 0.3 <= took <= TTL + 3, f"b served {took:.1f} s after a died"
    return f"a killed: b served after {took:.1f} s (ttl {TTL} s)"


def case_store_locked(case):
    a = Task(case, "a")
    wait_until("a serves", a.serving, 10)
    b = Task(case, "b")
    time.sleep(1)
    probe = Prober([a, b])
    lease = case[2]
    lease.lock()
    locked = time.monotonic()
    wait_until("a stops", lambda: not a.serving(), 5)
    stopped = time.monotonic() - locked
    time.sleep(2)
    lease.unlock()
    wait_until("someone serves again", lambda: a.serving() or b.serving(), 15)
    time.sleep(1)
    probe.stop()
    assert not probe.both, probe.both
    assert stopped <= 1.6 + 0.5, f"a served {stopped:.1f} s after the store stopped answering"
    return f"the store locked: a stopped after {stopped:.1f} s; one served again after the unlock"


def case_cut_off_standby(case):
    """A standby that reaches one of two hubgate tasks (its own node's, the
    overlay's links being down) never takes the lease; one that reaches
    both does, and the cut-off one takes it once its links are back."""
    local, remote, lost = Peer("127.0.0.1").listen(), Peer("127.0.0.2").listen(), Peer("127.0.0.3")
    a = Task(case, "a", peers=[local, remote])
    wait_until("a serves", a.serving, 10)
    cut = Task(case, "cut", peers=[local, lost])
    good = Task(case, "good", peers=[local, remote])
    time.sleep(1)
    probe = Prober([a, cut, good])
    a.kill()
    killed = time.monotonic()
    wait_until("good serves", good.serving, TTL + 5)
    took = time.monotonic() - killed
    good.kill()
    time.sleep(2 * TTL)
    assert "cut" not in probe.first, "the cut-off standby took the lease"
    lost.listen()
    back = time.monotonic()
    wait_until("cut serves once it reaches both", cut.serving, TTL + 5)
    probe.stop()
    assert not probe.both, probe.both
    assert "reaches 1 of 2 addresses" in cut.output(), cut.output()
    return (
        f"a killed: the standby reaching both took over after {took:.1f} s; the one reaching "
        f"1 of 2 waited {2 * TTL:.0f} s more, then served {time.monotonic() - back:.1f} s after its links were back"
    )


def case_malformed_peers(case):
    """A peer list with an entry that is not HOST:PORT is refused at the
    start, naming it, rather than skipped (a standby that silently checked
    fewer peers would take the lease when cut off)."""
    module_dir, _, lease = case
    said = []
    for bad in ["hubgate", "hubgate:api", "hubgate:70000", ":8001"]:
        command = [sys.executable, os.path.join(module_dir, "hubgate_lease.py"), *lease.args]
        command += ["--peers", f"a:8001,{bad}", "--", "true"]
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{bad!r}: accepted (still running after 10 s)") from None
        assert run.returncode == 2, f"{bad!r}: exit {run.returncode}: {run.stderr}"
        assert repr(bad) in run.stderr and "HOST:PORT" in run.stderr, run.stderr
        said.append(bad)
    return f"refused at the start, naming the entry: {', '.join(said)}"


CASES = [
    case_standby_waits,
    case_frozen_engine,
    case_hand_over,
    case_holder_killed,
    case_store_locked,
    case_cut_off_standby,
    case_malformed_peers,
]


def run_cases(module_dir, make_lease):
    """Every case on a new lease; (passed, failed)."""
    passed = failed = 0
    for case in CASES:
        with tempfile.TemporaryDirectory() as work:
            lease = make_lease(work)
            name = f"{case.__name__} ({lease.kind})"
            try:
                said = case((module_dir, work, lease))
                print(f"ok   {name}: {said}", flush=True)
                passed += 1
            except AssertionError as e:
                print(f"FAIL {name}: {e}", flush=True)
                failed += 1
            finally:
                while STARTED:
                    STARTED.pop().stop()
    return passed, failed


def main(module_dir, with_postgres):
    passed, failed = run_cases(module_dir, SqliteLease)
    if with_postgres:
        server = postgres.start("127.0.0.1", free_port())
        try:
            p, f = run_cases(module_dir, lambda work: PostgresLease(server, work))
        finally:
            postgres.stop(server["dir"])
        passed, failed = passed + p, failed + f
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], "--postgres" in sys.argv[2:]))
