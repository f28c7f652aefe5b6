# syntax=docker/dockerfile:1
# The graygate image (SPEC §13, issue 14 part 1). test/deploy/dockerfile.test.ts lints this file and
# checks what Kubernetes relies on (user, ports, stop signal, production dependencies only).
#
#   docker build -t graygate:0.2.0 .
#   docker run --rm -p 8000:8000 graygate:0.2.0    # config/graygate.json: v1/v2 on the mock upstream
#
# node:22 (maintenance LTS until April 2027; package.json needs >= 20.18). Debian slim rather than Alpine: glibc, and
# /bin/sh + sleep for the Kubernetes preStop hook. Pin a digest (node:22-bookworm-slim@sha256:…) for
# reproducible production builds.

# Stage 1: compile TypeScript to dist/ with the dev dependencies (typescript).
FROM node:22-bookworm-slim AS build
WORKDIR /app
# Lock file first, so this layer is reused until dependencies change. --ignore-scripts: `prepare`
# would run tsc before the sources are here.
# patch-package (a dev dependency): undici 7's fix for its issue #5360 (patches/,
# worker/upstream/undici-fix.ts) and prom-client's lazy OpenTelemetry import, which --ignore-scripts
# skips as a postinstall; the runtime stage takes the patched packages from here.
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --ignore-scripts --no-audit --no-fund && npx patch-package
COPY tsconfig.json ./
COPY master ./master
COPY shared ./shared
COPY worker ./worker
COPY scripts ./scripts
RUN npm run build

# Stage 2: what runs. Production dependencies only, no compiler, no sources.
FROM node:22-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# --omit=dev: production dependencies only. --ignore-scripts: `prepare` runs tsc, a dev dependency
# that is not installed here; dist/ comes from the build stage instead, and undici and prom-client as
# patched there.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/node_modules/undici ./node_modules/undici
COPY --from=build /app/node_modules/prom-client ./node_modules/prom-client
# bin/ for `graygate status` etc. inside the container; config/ is the default config.
COPY bin ./bin
COPY config ./config
# The official image's `node` user, numeric so Kubernetes' runAsNonRoot can check it without
# /etc/passwd. The files stay root-owned and read-only to it: the gateway writes only its workers'
# unix sockets, in $TMPDIR (else /tmp); with neither writable it does not start, so a read-only
# root needs `--tmpfs /tmp` (deploy/kubernetes mounts an emptyDir there).
USER 1000:1000
# 8000: the gateway (listen.port). 9000: admin API and /metrics (admin.port). The shipped config binds
# admin to 127.0.0.1, so nothing outside the container reaches it; a config that binds it elsewhere
# must come with GRAYGATE_ADMIN_TOKEN (SPEC §6), as deploy/kubernetes does.
EXPOSE 8000 9000
# SPEC §10: SIGTERM drains, letting in-flight streams finish within limits.shutdownTimeoutMs.
STOPSIGNAL SIGTERM
# node itself is PID 1, not npm (which does not pass SIGTERM on): the master handles SIGTERM and
# SIGINT (from its first moment) and reaps its own worker processes. A worker build that starts
# processes of its own leaves zombies nobody reaps when it dies: run such a build with `docker run
# --init` (or tini) in front.
ENTRYPOINT ["node", "dist/master/main.js"]
CMD ["--config", "config/graygate.json"]
