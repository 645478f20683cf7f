"""The hub's entrypoint: JupyterHub runs only in the task that holds the lease.

    python3 hubgate_lease.py --store sqlite:////srv/.../lease.sqlite -- jupyterhub -f ...
    python3 hubgate_lease.py --store ... --status     # the lease, one line

`hubgate deploy` runs a hub task on every manager. Each runs this module
(a Docker config mounted beside hubgate_hub.py). One task holds the hub's
lease and runs JupyterHub (the command after `--`); the others are
standbys that run nothing but this loop, and hubgate routes to none of them
(it routes to a hub task only once `/hub/health` answers there).

The lease is one row (holder, generation, seq) in a store every task
reaches: a sqlite file on the deployment's shared storage, or a table in
the hub's PostgreSQL database. No clocks are compared between nodes:

- The holder renews every `renew` seconds by counting `seq` up where it is
  still the holder, and only while its node's Docker engine answers (a hub
  whose engine is frozen or gone can neither spawn nor poll, and the swarm
  replaces it elsewhere).
- A standby takes the lease (counting `seq` up where it still has the value
  it saw, so only one can) once `seq` has not moved for `ttl` seconds of
  its own clock; at once when the holder released it and was of another
  generation (an update handing over to its new task); `handoff` seconds
  after a release by its own generation. It takes it only while its node's
  engine answers and, given `--peers`, while it reaches hubgate across the
  overlay: of the addresses the peers resolve to (hubgate's tasks, one per
  manager), two accept a connection (all of them when fewer). One of them
  may be on its own node, which a local bridge reaches even when the
  node's overlay links are down (seen for over a minute on a manager just
  restarted or promoted); such a hub could neither be routed to nor update
  routes, so a standby with working links takes the lease instead.
- The holder counts from the start of its last renewal that went through:
  `term` seconds later it stops JupyterHub (SIGTERM), `kill` seconds later
  it kills it. A standby counts `ttl` from the moment it saw that renewal's
  `seq`, which is later, so JupyterHub has stopped on the old holder before
  anyone can take the lease (`kill` < `ttl`). A holder that stopped
  JupyterHub releases the lease if the store still answers: to any standby
  at once when it failed, to a new spec's first when its task stops.

A failover therefore takes at most `renew` + `ttl` seconds to the takeover
(less when the old holder could release), then JupyterHub's start.
"""

import argparse
import concurrent.futures
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

# Seconds; hubgate deploy passes these, the defaults are for running by hand.
DEFAULTS = {"renew": 1.0, "ttl": 10.0, "term": 5.0, "kill": 8.0, "handoff": 3.0}
# How long one store call or one engine check may take.
CALL_TIMEOUT = 3.0
# How long a connection to a peer may take.
PEER_TIMEOUT = 1.0
LEASE = "hub"


def log(message):
    print(f"hubgate-lease: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Row:
    """The lease as the store holds it; `holder` None: released."""

    holder: str | None
    generation: str
    seq: int
    taken_at: str


class Store:
    """The lease row in a SQL database: sqlite on the shared storage, or
    PostgreSQL. Every change is one statement that checks what it changes."""

    placeholder = "?"

    def __init__(self, connect):
        self.connect = connect
        self.conn = None

    def sql(self, text):
        return text.replace("?", self.placeholder)

    def execute(self, text, args=()):
        """Runs one statement in its own transaction: the rows it changed,
        or its rows when it is a query."""
        if self.conn is None:
            self.conn = self.connect()
            self.setup()
        try:
            cur = self.conn.cursor()
            cur.execute(self.sql(text), args)
            rows = cur.fetchall() if cur.description else cur.rowcount
            self.conn.commit()
            return rows
        except Exception:
            self.close()
            raise

    def setup(self):
        cur = self.conn.cursor()
        cur.execute(
            "CREATE TABLE IF NOT EXISTS hubgate_lease ("
            "name TEXT PRIMARY KEY, holder TEXT, generation TEXT NOT NULL, "
            "seq BIGINT NOT NULL, taken_at TEXT NOT NULL)"
        )
        self.conn.commit()

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - a broken connection is dropped either way
                pass
            self.conn = None

    def read(self):
        rows = self.execute("SELECT holder, generation, seq, taken_at FROM hubgate_lease WHERE name = ?", (LEASE,))
        return Row(*rows[0]) if rows else None

    def create(self, me, generation):
        """Takes a lease nobody ever held: False when another task was first."""
        try:
            self.execute(
                "INSERT INTO hubgate_lease (name, holder, generation, seq, taken_at) VALUES (?, ?, ?, 1, ?)",
                (LEASE, me, generation, now_text()),
            )
        except Exception as e:  # noqa: BLE001 - the driver's integrity error
            if "unique" in str(e).lower() or "duplicate" in str(e).lower():
                return False
            raise
        return True

    def claim(self, me, generation, seen_seq):
        """Takes the lease if its seq is still the one seen."""
        changed = self.execute(
            "UPDATE hubgate_lease SET holder = ?, generation = ?, seq = seq + 1, taken_at = ? "
            "WHERE name = ? AND seq = ?",
            (me, generation, now_text(), LEASE, seen_seq),
        )
        return changed == 1

    def renew(self, me):
        return self.execute("UPDATE hubgate_lease SET seq = seq + 1 WHERE name = ? AND holder = ?", (LEASE, me)) == 1

    def release(self, me, generation):
        """Gives the lease up; `generation` "" lets any standby take it at
        once (the holder failed), its own lets a new spec's go first."""
        return self.execute(
            "UPDATE hubgate_lease SET holder = NULL, generation = ?, seq = seq + 1 WHERE name = ? AND holder = ?",
            (generation, LEASE, me),
        ) == 1


class PostgresStore(Store):
    placeholder = "%s"


def now_text():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def open_store(url, password_file, pgpass_dir):
    """The store a URL names: sqlite:////path or postgresql://user@host/db."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        return Store(lambda: sqlite3.connect(path, timeout=CALL_TIMEOUT, check_same_thread=False))
    if url.startswith(("postgresql://", "postgres://")):
        import psycopg2  # noqa: PLC0415 - only hubs on PostgreSQL have it

        if password_file:
            os.environ["PGPASSFILE"] = pgpass(password_file, pgpass_dir)

        def connect():
            return psycopg2.connect(
                url,
                connect_timeout=int(CALL_TIMEOUT),
                options=f"-c statement_timeout={int(CALL_TIMEOUT * 1000)}",
            )

        return PostgresStore(connect)
    raise SystemExit(f"hubgate-lease: --store {url!r}: not sqlite:////PATH or postgresql://...")


def pgpass(password_file, folder):
    """A libpq password file (mode 0600, in `folder`: the task's memory) with
    the password of `password_file` for any server: libpq reads it for this
    process and for JupyterHub, which inherits PGPASSFILE (JupyterHub's
    schema migrations connect with its URL alone, so a password passed to
    its engine would not reach them). The password stays out of every URL,
    spec, environment value and log."""
    with open(password_file) as f:
        password = f.read().strip()
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    # One file per task, replaced whole: `--status` runs write the same.
    path = os.path.join(folder, f"hubgate-pgpass-{os.getuid()}")
    fd, new = tempfile.mkstemp(prefix="hubgate-pgpass-", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(f"*:*:*:*:{escaped}\n")
    os.replace(new, path)
    return path


def engine_answers(socket_path):
    """The node's Docker engine answers `GET /_ping` in time."""
    if not socket_path:
        return True
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(CALL_TIMEOUT)
            s.connect(socket_path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return s.recv(64).startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
    except OSError:
        return False


def peer_list(value):
    """`HOST:PORT,...` as (host, port) pairs; an entry that is not one is an
    error (a standby that skipped it would check fewer peers)."""
    peers = []
    for entry in filter(None, value.split(",")):
        host, _, port = entry.rpartition(":")
        if not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            raise argparse.ArgumentTypeError(f"{entry!r} is not HOST:PORT")
        peers.append((host.strip("[]"), int(port)))
    return peers


def peer_addresses(peers):
    """Every address the (host, port) peers resolve to now."""
    addresses = set()
    for host, port in peers:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            continue
        addresses.update((info[0], info[4]) for info in infos)
    return sorted(addresses, key=str)


def accepts(address):
    family, sockaddr = address
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(PEER_TIMEOUT)
            s.connect(sockaddr)
            return True
    except OSError:
        return False


def peers_reached(peers, pool):
    """(reached, resolved): how many peer addresses accept a connection."""
    addresses = peer_addresses(peers)
    return sum(pool.map(accepts, addresses)), len(addresses)


class Watch:
    """A check repeated every `period` seconds on a thread of its own (one
    that hangs never holds up the loop): when it last passed."""

    def __init__(self, check, period, passed_at):
        self.check = check
        self.period = period
        self.passed_at = passed_at
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            started = time.monotonic()
            if self.check():
                self.passed_at = time.monotonic()
            time.sleep(max(0.0, self.period - (time.monotonic() - started)))

    def passed_within(self, seconds):
        return time.monotonic() - self.passed_at <= seconds


class Reach:
    """Whether this task reaches enough of its peers: two addresses, or all
    when fewer resolve. Logs each change."""

    def __init__(self, peers):
        self.peers = peers
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
        self.said = None

    def __call__(self):
        reached, resolved = peers_reached(self.peers, self.pool)
        ok = resolved > 0 and reached >= min(2, resolved)
        if ok != self.said:
            self.said = ok
            verdict = "may take the lease" if ok else "does not take the lease"
            peers = ",".join(f"{h}:{p}" for h, p in self.peers)
            log(f"reaches {reached} of {resolved} addresses of {peers}: {verdict}")
        return ok


class Standby:
    """What a standby saw of the lease, and when (its own clock)."""

    def __init__(self, generation, ttl, handoff):
        self.generation = generation
        self.ttl = ttl
        self.handoff = handoff
        self.seen = None
        self.seen_at = 0.0

    def may_take(self, row, now):
        """Whether the lease is free for this task: the row's seq when so."""
        if row is None:
            return True
        if self.seen is None or row.seq != self.seen.seq:
            self.seen = row
            self.seen_at = now
        waited = now - self.seen_at
        if row.holder is None:
            return row.generation != self.generation or waited >= self.handoff
        return waited >= self.ttl


# What a store call that failed or took too long gives.
FAILED = object()


class Runner:
    """A task's life: standby until it takes the lease, then JupyterHub for
    as long as it renews it. Store calls and engine checks run on one
    worker thread, so a store that hangs (a hard NFS mount) never keeps
    the loop from stopping JupyterHub in time."""

    def __init__(self, store, me, args, command):
        self.store = store
        self.me = me
        self.args = args
        self.command = command
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.stopping = False
        renew = args.renew
        # Whether the node's engine answers (a frozen one never holds up a
        # store call), assumed at the start.
        self.engine = Watch(lambda: engine_answers(args.docker_socket), renew, time.monotonic())
        # Whether hubgate is reached across the overlay, not assumed.
        self.reach = Watch(Reach(args.peers), renew, float("-inf")) if args.peers else None
        # When this task's claim of the lease started (its own clock).
        self.claimed_at = 0.0

    def engine_answered(self):
        """The engine answered within the last two renewal periods."""
        return self.engine.passed_within(2 * self.args.renew + 0.5)

    def may_claim(self):
        """The engine answers and, given peers, they are reached."""
        if self.reach is None:
            return self.engine_answered()
        return self.engine_answered() and self.reach.passed_within(2 * self.args.renew + PEER_TIMEOUT + 0.5)

    def call(self, fn, *args):
        """A call on the worker thread: its result, or FAILED."""
        future = self.pool.submit(fn, *args)
        try:
            return future.result(timeout=CALL_TIMEOUT + 1)
        except concurrent.futures.TimeoutError:
            log(f"{fn.__name__}: no answer in {CALL_TIMEOUT + 1:.0f} s")
        except Exception as e:  # noqa: BLE001 - any store failure means: not now
            log(f"{fn.__name__}: {e}")
        return FAILED

    def wait_for_lease(self):
        """Waits as a standby: True once this task holds the lease."""
        standby = Standby(self.args.generation, self.args.ttl, self.args.handoff)
        holder = None
        while not self.stopping:
            row = self.call(self.store.read)
            if row is not FAILED:
                if row is not None and row.holder != holder:
                    holder = row.holder
                    log(f"standby: {holder or 'nobody (released)'} holds the lease")
                if standby.may_take(row, time.monotonic()) and self.take(row):
                    return True
            time.sleep(self.args.renew)
        return False

    def take(self, row):
        if not self.may_claim():
            return False
        self.claimed_at = time.monotonic()
        if row is None:
            taken = self.call(self.store.create, self.me, self.args.generation)
        else:
            taken = self.call(self.store.claim, self.me, self.args.generation, row.seq)
        if taken is True:
            before = f"from {row.holder or 'a release'}" if row else "new"
            log(f"{self.me} took the lease ({before}); starting {self.command[0]}")
        return taken is True

    def renewal(self):
        """One renewal attempt, on the worker: renewed, lost or failed."""
        if not self.engine_answered():
            log("the node's Docker engine does not answer: the lease is not renewed")
            return "failed"
        if self.store.renew(self.me):
            return "renewed"
        row = self.store.read()
        return "lost" if row is not None and row.holder != self.me else "failed"

    def serve(self):
        """Runs JupyterHub while the lease is renewed: the task's exit code."""
        renewed_at = attempted_at = self.claimed_at
        # A group of its own: a stop reaches what JupyterHub started too
        # (the idle culler), so nothing of it outlives the lease.
        child = subprocess.Popen(self.command, start_new_session=True)

        def signal_all(sig):
            try:
                os.killpg(child.pid, sig)
            except ProcessLookupError:
                pass

        pending = None
        kill_at = None
        reason = None
        while child.poll() is None:
            now = time.monotonic()
            if self.stopping and kill_at is None:
                reason = "the task is stopping"
                signal_all(signal.SIGTERM)
                kill_at = now + self.args.grace
            if kill_at is not None:
                if now >= kill_at:
                    signal_all(signal.SIGKILL)
                time.sleep(0.1)
                continue
            if pending is not None and pending[1].done():
                started, future = pending
                pending = None
                outcome = future.exception() or future.result()
                if outcome == "renewed":
                    renewed_at = started
                elif outcome == "lost":
                    log("another task holds the lease: JupyterHub is killed")
                    signal_all(signal.SIGKILL)
                    child.wait()
                    return 1
                elif outcome != "failed":
                    log(f"renewal: {outcome}")
            if pending is None and now - attempted_at >= self.args.renew:
                attempted_at = now
                pending = (now, self.pool.submit(self.renewal))
            if now - renewed_at >= self.args.term:
                reason = f"no renewal for {now - renewed_at:.1f} s"
                log(f"{reason}: JupyterHub is stopped before the lease can run out")
                signal_all(signal.SIGTERM)
                kill_at = renewed_at + self.args.kill
            time.sleep(0.1)
        log(f"JupyterHub exited ({child.returncode}){f': {reason}' if reason else ''}")
        signal_all(signal.SIGKILL)
        # A holder that failed (not a stop) hands over to any standby at once.
        generation = self.args.generation if self.stopping or not reason else ""
        if self.call(self.store.release, self.me, generation) is True:
            log("released the lease")
        if self.stopping:
            return 0
        return 1 if reason else child.returncode


def parse(argv):
    p = argparse.ArgumentParser(prog="hubgate_lease.py", description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True, help="sqlite:////PATH or postgresql://USER@HOST/DB")
    p.add_argument("--password-file", help="the PostgreSQL password")
    p.add_argument("--pgpass-dir", default="/dev/shm", help="where libpq's password file is written")
    p.add_argument("--docker-socket", default="/var/run/docker.sock", help="the node's engine ('' : none)")
    p.add_argument(
        "--peers",
        type=peer_list,
        default=[],
        help="HOST:PORT,... a standby must reach to take the lease (hubgate's API)",
    )
    p.add_argument(
        "--generation",
        default=os.environ.get("HUBGATE_SPEC", ""),
        help="the hub spec this task runs (default: $HUBGATE_SPEC)",
    )
    p.add_argument(
        "--holder",
        default=os.environ.get("HUBGATE_HOLDER", ""),
        help="this task's name in the lease (default: $HUBGATE_HOLDER)",
    )
    p.add_argument("--grace", type=float, default=6.0, help="seconds JupyterHub has to stop")
    for name, value in DEFAULTS.items():
        p.add_argument(f"--{name}", type=float, default=value)
    p.add_argument("--status", action="store_true", help="print the lease and exit")
    if "--status" in argv:
        return p.parse_args(argv[: argv.index("--")] if "--" in argv else argv), []
    if "--" not in argv:
        p.error("the command to run follows --")
    split = argv.index("--")
    args = p.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        p.error("the command to run follows --")
    if not args.kill < args.ttl or not args.term <= args.kill:
        p.error("needs term <= kill < ttl: JupyterHub must be gone before the lease runs out")
    args.grace = min(args.grace, args.kill - args.term)
    return args, command


def status(store):
    """The lease as one line: who holds it, since when."""
    row = store.read()
    if row is None:
        return "no hub has held the lease yet"
    holder = row.holder or "nobody (released)"
    return f"held by {holder} since {row.taken_at} (renewal {row.seq}, hub spec {row.generation or '-'})"


def main(argv):
    args, command = parse(argv)
    if args.status:
        print(status(open_store(args.store, args.password_file, args.pgpass_dir)))
        return 0
    me = args.holder or f"{socket.gethostname()}/{os.getpid()}"
    runner = Runner(open_store(args.store, args.password_file, args.pgpass_dir), me, args, command)

    def stop(signum, _frame):
        log(f"signal {signal.Signals(signum).name}")
        runner.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"{me}: standby for the lease in {args.store}")
    if not runner.wait_for_lease():
        return 0
    return runner.serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
