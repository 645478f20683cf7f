"""A real PostgreSQL server for the tests: Debian's `postgresql` binaries
(scripts/test installs them), a data directory of its own, one role with a
password and one database, listening on the address and port given.

    postgres.py start --host 127.0.0.1 --port 5433   # prints a JSON line
    postgres.py stop DIR                             # the "dir" it printed

`start` prints {"dir", "url", "password_file", "pid"}: the URL has no
password (the password file holds it, as `hub.database` wants). `stop`
ends the server by the PID it recorded and removes the directory. Run as
root, the server runs as Debian's `postgres` user (initdb refuses root).
"""

import argparse
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROLE = "hubgate"
DATABASE = "jupyterhub"


def binary(name):
    """A PostgreSQL server program, from the newest installed version."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise SystemExit(
            f"postgres.py: no PostgreSQL server ({name}): run scripts/test, which installs Debian's postgresql"
        )
    return found[-1]


def as_owner(command):
    """`command` as the server's owner: `postgres` when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def run(command):
    done = subprocess.run(as_owner(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"postgres.py: {' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def start(host, port):
    work = tempfile.mkdtemp(prefix="hubgate-pg-")
    os.chmod(work, 0o755)
    data = os.path.join(work, "data")
    password = secrets.token_hex(16)
    password_file = os.path.join(work, "password")
    with open(password_file, "w") as f:
        f.write(password + "\n")
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(work, owner.pw_uid, owner.pw_gid)
        os.chown(password_file, owner.pw_uid, owner.pw_gid)
    os.chmod(password_file, 0o600)
    run([
        binary("initdb"),
        "-D", data,
        "-U", ROLE,
        f"--pwfile={password_file}",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "-E", "UTF8",
    ])  # fmt: skip
    with open(os.path.join(data, "pg_hba.conf"), "a") as f:
        f.write("host all all 0.0.0.0/0 scram-sha-256\n")
    options = f"-c listen_addresses={host} -c port={port} -c unix_socket_directories={work}"
    run([binary("pg_ctl"), "-D", data, "-l", os.path.join(work, "log"), "-o", options, "-w", "-t", "30", "start"])
    run([binary("createdb"), "-h", work, "-p", str(port), "-U", ROLE, DATABASE])
    with open(os.path.join(data, "postmaster.pid")) as f:
        pid = int(f.readline())
    return {
        "dir": work,
        "url": f"postgresql://{ROLE}@{host}:{port}/{DATABASE}",
        "password_file": password_file,
        "pid": pid,
    }


def stop(work):
    """Ends the server this directory's start recorded (a fast shutdown),
    waits up to 30 s, and removes the directory."""
    try:
        with open(os.path.join(work, "data", "postmaster.pid")) as f:
            pid = int(f.readline())
    except OSError:
        pid = None
    if pid is not None:
        try:
            os.kill(pid, signal.SIGINT)
            for _ in range(300):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(work, ignore_errors=True)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("start")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    t = sub.add_parser("stop")
    t.add_argument("dir")
    args = p.parse_args(argv)
    if args.what == "start":
        print(json.dumps(start(args.host, args.port)), flush=True)
    else:
        stop(args.dir)


if __name__ == "__main__":
    main(sys.argv[1:])
