"""The jupyter_server configuration `hubgate deploy` gives every user server.

The hub's spawner mounts this file (a Docker config) into each server and
names its directory in JUPYTER_CONFIG_PATH, so it works with any image that
runs jupyterhub-singleuser. It holds no value of a deployment.
"""

try:
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
