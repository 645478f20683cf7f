"""The jupyter_server configuration `hubgate deploy` gives every user server.

The hub's spawner mounts this file (a Docker config) into each server and
names its directory in JUPYTER_CONFIG_PATH, so it works with any image that
runs jupyterhub-singleuser. It holds no value of a deployment.
"""

import os

# The server's API token: a Docker secret's file (the hub keeps it out of
# the service's spec, which anyone reading services could see), read into
# the environment jupyterhub-singleuser and its kernels read it from.
_token_file = os.environ.get("HUBGATE_API_TOKEN_FILE")
if _token_file:
    with open(_token_file) as _f:
        os.environ["JUPYTERHUB_API_TOKEN"] = os.environ["JPY_API_TOKEN"] = _f.read().strip()

try:
    import aiohttp.client
    import aiohttp.connector
    import aiohttp.resolver
except ImportError:  # a JupyterHub older than 6 talks to the hub with tornado
    pass
else:
    # Docker's DNS answers with a 600 s TTL, which aiodns (c-ares) keeps:
    # after the hub's task is replaced (an `apply` that changes the hub, a
    # failover) the server would call the hub's old address for ten minutes
    # (logins to it end in a 500, activity reports fail). getaddrinfo asks
    # Docker's DNS each time, as the hub itself is configured to.
    aiohttp.connector.DefaultResolver = aiohttp.resolver.ThreadedResolver
    # A connection attempt to a hub task that just started can stall (its
    # first SYN lost on the overlay, the retries on the same 5-tuple too),
    # and one to a task of a lost node is never answered. The server's
    # client (JupyterHub's own session, which reads no configuration here)
    # would wait aiohttp's 30 s per attempt: its activity reports missed
    # the hub that took over for half a minute. Give up after 3 s, as the
    # hub's own client does; the next attempt resolves the hub anew.
    aiohttp.client.DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=300, sock_connect=3)
