# syntax=docker/dockerfile:1
# cdc-sync-agent: the agent on the official Node.js 24 LTS slim image. The image holds the compiled build
# (dist/, `npm run build`), not src/: a checkout runs its TypeScript sources through Node's type stripping, whose
# WebAssembly stripper costs ≈ 30 MB of RSS for the life of the process (docs/benchmarks.md). bin/cdc-agent.js
# runs dist/ when src/ is absent. test/cli/build.test.ts runs the demo through exactly this layout.
# Not built on the development machine (no container engine there); CI builds it on every push.

ARG NODE_IMAGE=node:24-bookworm-slim

# Production dependencies only. --ignore-scripts: no production dependency needs an install script
# (pg and tedious are pure JavaScript), and none should run at build time.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
# .npmrc: legacy-peer-deps, without which npm ci refuses the lockfile (a devDependency's peer is not in it).
COPY package.json package-lock.json .npmrc ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# The build: all dependencies (TypeScript and the type packages are devDependencies), then tsc. Run with the
# image's node, not npm run: --ignore-scripts leaves the pinned `node` devDependency without its binary.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    CDC_AGENT_CONFIG=/etc/cdc-agent/cdc-agent.yaml
WORKDIR /app
# Owned by root and read-only to the agent, which runs as the image's unprivileged `node` user (uid 1000).
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY --from=build /app/dist ./dist
COPY sql ./sql
USER 1000:1000
# /healthz, /readyz and /metrics (config worker.healthPort).
EXPOSE 8080
# The agent handles SIGTERM itself (drain, then exit 0), so node runs as PID 1 without a shell.
ENTRYPOINT ["node", "bin/cdc-agent.js"]
CMD ["run"]
