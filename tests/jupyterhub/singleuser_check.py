"""Load hubgate's user-server configuration as jupyter_server loads it.

Usage: singleuser_check.py SINGLEUSER_CONFIG

Then opens the HTTP client session a user server calls the hub with (its
activity reports, its logins' token checks) and checks what the
configuration promises of it: Docker's DNS asked on each connection, and
a connection attempt to the hub given up after a few seconds, so the next
attempt resolves the hub anew (a hub that failed over or was replaced has
another address; aiohttp's own default waits 30 s). Prints one line and
exits non-zero on a failure.
"""

import asyncio
import sys

import aiohttp.connector
import aiohttp.resolver
from jupyterhub.httpclient import JupyterHubHTTPClient
from traitlets.config.loader import PyFileConfigLoader

# Longest a user server may wait for one connection to the hub.
MOST_CONNECT_SECONDS = 5


async def session_of_a_user_server():
    client = JupyterHubHTTPClient.loop_instance()
    session = client._session
    try:
        return session.timeout, type(session.connector._resolver)
    finally:
        await client.close()


def main():
    PyFileConfigLoader(sys.argv[1]).load_config()
    timeout, resolver = asyncio.run(session_of_a_user_server())
    if resolver is not aiohttp.resolver.ThreadedResolver:
        sys.exit(f"the hub is resolved by {resolver.__name__}, which keeps Docker's answers")
    connect = timeout.sock_connect or timeout.connect or timeout.total
    if connect is None or connect > MOST_CONNECT_SECONDS:
        sys.exit(f"a connection to the hub may take {connect} s before the next attempt")
    print(f"the user server's hub client: {resolver.__name__}, connect attempts of {connect} s: 1 passed, 0 failed")


if __name__ == "__main__":
    main()
