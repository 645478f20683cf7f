"""Load rendered jupyterhub_config.py files as JupyterHub loads them.

Usage: config_check.py MODULE_DIR CONFIG...

MODULE_DIR holds hubgate_hub.py (deploy/src/desired/). Each CONFIG is
compiled, then loaded by traitlets' own loader with hubgate_hub importable
and its secrets read as stand-ins (the paths exist only in the hub's
container). Every setting it makes must be a configurable trait of the
class it names: traitlets only warns, at the hub's start, about one that
is not. Prints one line a file and exits non-zero on a failure.
"""

import py_compile
import sys

from dockerspawner import SwarmSpawner
from jupyterhub.app import JupyterHub
from jupyterhub.auth import Authenticator, DummyAuthenticator
from jupyterhub.crypto import CryptKeeper
from jupyterhub.httpclient import JupyterHubHTTPClient
from jupyterhub.proxy import ConfigurableHTTPProxy
from jupyterhub.spawner import Spawner
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.github import GitHubOAuthenticator
from traitlets.config.loader import PyFileConfigLoader


def classes(hubgate_hub):
    known = [
        JupyterHub,
        Spawner,
        SwarmSpawner,
        Authenticator,
        DummyAuthenticator,
        GitHubOAuthenticator,
        GenericOAuthenticator,
        ConfigurableHTTPProxy,
        JupyterHubHTTPClient,
        CryptKeeper,
        hubgate_hub.HubgateProxy,
        hubgate_hub.HubgateSwarmSpawner,
    ]
    return {cls.__name__: cls for cls in known}


def check(path, hubgate_hub):
    py_compile.compile(path, doraise=True)
    config = PyFileConfigLoader(path).load_config()
    known = classes(hubgate_hub)
    for section, settings in config.items():
        cls = known.get(section)
        if cls is None:
            raise AssertionError(f"a setting for {section}, a class this check does not know")
        traits = cls.class_trait_names(config=True)
        unknown = sorted(set(settings) - set(traits))
        if unknown:
            raise AssertionError(f"{section} has no configurable {', '.join(unknown)}")
    if config.JupyterHub.proxy_class is not hubgate_hub.HubgateProxy:
        raise AssertionError("the proxy class is not hubgate's")
    if config.JupyterHub.spawner_class is not hubgate_hub.HubgateSwarmSpawner:
        raise AssertionError("the spawner class is not hubgate's")
    if not config.HubgateSwarmSpawner.user_volume:
        raise AssertionError("no user volume")
    if len(config.JupyterHub.cookie_secret) != 32 or len(config.CryptKeeper["keys"][0]) != 32:
        raise AssertionError("the cookie secret and the crypt key are not 32 bytes")
    db_url = config.JupyterHub.db_url
    if not db_url.startswith(("postgresql+psycopg2://", "sqlite:////srv/hubgate-storage/")):
        raise AssertionError(f"the database is neither PostgreSQL nor on the storage: {db_url}")
    return len(config)


def main():
    sys.path.insert(0, sys.argv[1])
    import hubgate_hub

    # Every secret a stand-in of the generated ones' form: 32 bytes as hex.
    hubgate_hub.read_secret = lambda _path: "ab" * 32
    failed = 0
    for path in sys.argv[2:]:
        try:
            sections = check(path, hubgate_hub)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failed += 1
            print(f"FAIL {path}: {type(e).__name__}: {e}")
        else:
            print(f"ok   {path}: {sections} classes configured")
    print(f"{len(sys.argv) - 2 - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
