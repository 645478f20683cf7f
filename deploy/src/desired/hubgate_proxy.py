class HubgateProxy(ConfigurableHTTPProxy):
    """hubgate's API on every replica, not on one picked by DNS.

    Each hubgate replica keeps its own route table. Sent to the service
    name, a change would reach one replica at random, and a route deleted
    on one would stay on another (still pointing where a stopped server
    was). So every change goes to each replica the service name resolves
    to, and the routes the hub checks are all replicas' together: a route
    missing on one, or with another target there, is shown with no target,
    so the hub's periodic check writes it again everywhere; a stale one on
    any replica is deleted everywhere; activity is the latest any replica
    saw. A replica that does not answer within HUBGATE_REPLICA_TIMEOUT is
    skipped (and mended at the next check).
    """

    async def hubgate_replicas(self):
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                HUBGATE_API_HOST, HUBGATE_API_PORT, type=socket.SOCK_STREAM
            )
        except socket.gaierror:
            return [self.api_url]
        hosts = sorted({info[4][0] for info in infos})
        return [
            f"http://[{h}]:{HUBGATE_API_PORT}" if ":" in h else f"http://{h}:{HUBGATE_API_PORT}"
            for h in hosts
        ] or [self.api_url]

    async def on_each_replica(self, path, method, body=None):
        """`method path` on every replica at once: (replica, response or error)."""
        if isinstance(body, dict):
            body = json.dumps(body)
        headers = {"Authorization": f"token {self.auth_token}"}

        async def one(base):
            url = url_path_join(base, "api/routes", path)
            async with self.semaphore:
                return await asyncio.wait_for(
                    fetch(url, method=method, headers=headers, data=body),
                    HUBGATE_REPLICA_TIMEOUT,
                )

        bases = await self.hubgate_replicas()
        answers = await asyncio.gather(*(one(b) for b in bases), return_exceptions=True)
        return list(zip(bases, answers))

    async def api_request(self, path, method="GET", body=None):
        if method == "GET":
            return await super().api_request(path, method, body)
        answers = await self.on_each_replica(path, method, body)
        done = [a for _, a in answers if not isinstance(a, BaseException)]
        refused = [
            a for _, a in answers if isinstance(a, ClientResponseError) and a.status < 500
        ]
        for base, a in answers:
            if isinstance(a, BaseException) and a not in refused:
                self.log.warning("hubgate at %s missed %s %s: %s", base, method, path, a)
        # A 404 to a DELETE means that replica has no such route: its goal.
        wrong = [a for a in refused if not (method == "DELETE" and a.status == 404)]
        if wrong:
            raise wrong[0]
        if done:
            return done[0]
        if refused:
            raise refused[0]
        # No replica answered: the usual retries, against the service name.
        return await super().api_request(path, method, body)

    async def get_all_routes(self):
        views = []
        for base, a in await self.on_each_replica("", "GET"):
            if isinstance(a, BaseException):
                self.log.warning("hubgate at %s did not list its routes: %s", base, a)
                continue
            views.append(await a.json())
        if not views:
            return await super().get_all_routes()
        routes = {}
        for chp_path in set().union(*views):
            copies = [view.get(chp_path) for view in views]
            data = dict(next(c for c in copies if c is not None))
            if "jupyterhub" not in data:
                continue
            if any(c is None or c.get("target") != data.get("target") for c in copies):
                data["target"] = ""
            stamps = [c["last_activity"] for c in copies if c and c.get("last_activity")]
            if stamps:
                data["last_activity"] = max(stamps)
            routespec = self._routespec_from_chp_path(chp_path)
            routes[routespec] = self._reformat_routespec(routespec, data)
        return routes


c.JupyterHub.proxy_class = HubgateProxy
