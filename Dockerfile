# The SSE gateway as a container image.
#   docker build -t sse-gateway .
#   docker run --rm -p 3000:3000 -e REDIS_URL=redis://redis:6379 sse-gateway
# Every setting is an environment variable (src/config.ts). Without REDIS_URL the gateway runs on its
# in-memory store: one instance only, nothing survives a restart.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: compile TypeScript to dist/ ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Manifests first, so the dependency layer is cached until package*.json change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# tsc emits only .js: the Redis Lua scripts, which the store module reads at runtime from
# ./lua/ next to itself, must be copied to dist/store/lua/. (npm run build copies them as well; the
# explicit copy keeps the image right even if that step changes, and `test` fails the build early.)
RUN npm run build \
 && mkdir -p dist/store/lua \
 && cp src/store/lua/*.lua dist/store/lua/ \
 && test -f dist/server.js \
 && ls dist/store/lua/append-*.lua

# ---- runtime: production dependencies and the built output only ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    PORT=3000
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no production dependency needs an install script, so none runs in the image.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
# Owned by root and read-only for the `node` user that runs the server: a compromised process
# cannot rewrite its own code.
COPY --from=build /app/dist ./dist
# The dashboard (GET /) is served from public/, next to dist/.
COPY public ./public

# The unprivileged user that the official Node images provide (uid 1000).
USER node
EXPOSE 3000

# Liveness only (/healthz), through Node's built-in fetch: slim images have no curl or wget. It
# does not use /readyz, which is 503 while Redis is down or the instance drains: that is a reason to
# send no new traffic, not to restart it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz', { signal: AbortSignal.timeout(2500) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# SIGTERM starts the drain (readyz 503, listener closed, streams told to reconnect, runs finish),
# then the process exits 0. Give it DRAIN_MS + RUN_DRAIN_TIMEOUT_MS (default 10 s + 30 s) before
# the runtime sends SIGKILL: `docker stop -t 45`, compose `stop_grace_period: 45s`, Kubernetes
# `terminationGracePeriodSeconds: 45`.
STOPSIGNAL SIGTERM
# node directly, not `npm start`: npm would sit between the runtime and node and not forward SIGTERM.
CMD ["node", "dist/server.js"]
