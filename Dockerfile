# syntax=docker/dockerfile:1
# cdc-sync-agent: the agent on the official Node.js 24 LTS slim image. The image holds the compiled build
# (dist/, `npm run build`), not src/: a checkout runs its TypeScript sources through Node's type stripping, whose
# WebAssembly stripper costs ≈ 30 MB of RSS for the life of the process (docs/benchmarks.md). bin/cdc-agent.js
# runs dist/ when src/ is absent. test/cli/build.test.ts runs the demo through exactly this layout.
# Not built on the development machine (no container engine there); CI builds it on every push.

# The Node the tests run on (package.json's `node` devDependency, 24.21.0), pinned by the multi-platform index
# digest of the official image's tag: a rebuilt tag cannot change the image underneath. The digest was taken from
# public records of the tag (2026-09), not pulled here; CI's build resolves it. test/helm/image.test.ts keeps the
# version equal to the devDependency. Bump both together, with the digest `docker buildx imagetools inspect` prints.
ARG NODE_IMAGE=node:24.21.0-bookworm-slim@sha256:2fe369e969550cde8e867afc3fe370b260140cab4a23d467074295b42163d553

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
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
ARG NODE_IMAGE
LABEL org.opencontainers.image.title="cdc-sync-agent" \
      org.opencontainers.image.description="On-premises agent that mirrors tenants' legacy SQL Server data to a SaaS reporting platform by snapshot-diff." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${NODE_IMAGE}"
# The agent needs node and nothing else: no package manager in the image it runs from (npm, npx, corepack, and
# yarn where the base image has it), so there is less to patch and nothing to install packages with at run time.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack /opt/yarn-* \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg
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
# The agent handles SIGTERM itself (drain, then exit 0; during start-up, exit 0 at once), so node runs as PID 1
# without a shell or an init.
ENTRYPOINT ["node", "bin/cdc-agent.js"]
CMD ["run"]
