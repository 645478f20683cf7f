# hubgate's production image: the release binary and the few runtime files it
# needs (glibc's loader and libraries, passwd/group, nsswitch.conf) on an empty
# base: no shell, no package manager, nothing to pull from a registry.
#
# Build it with `scripts/build-image hubgate`, which compiles hubgate on the
# host, stages the context in target/image/hubgate/ (rootfs/ below) and runs
# `docker build -f Dockerfile target/image/hubgate`. The swarm tests build and
# run this very file that way.
#
# Runs as uid 10001. The Docker socket (root:docker, 0660) is readable by the
# socket's group only: give the service that group (`--group <gid of
# /var/run/docker.sock>`, compose `group_add`), see docs/swarm.md. Ports below
# 1024 need no capability: Docker >= 20.10 sets
# net.ipv4.ip_unprivileged_port_start=0 in each container.
FROM scratch
COPY rootfs/ /
USER 10001:10001
EXPOSE 80 443 8001
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/hubgate", "healthcheck", "--addr", "127.0.0.1:80"]
ENTRYPOINT ["/usr/local/bin/hubgate"]
CMD ["serve", "--ip", "0.0.0.0", "--port", "80", "--api-ip", "0.0.0.0", "--api-port", "8001", "--swarm"]
