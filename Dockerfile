# syntax=docker/dockerfile:1

# --- build: full install (TypeScript), compile to dist/ ---
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
COPY migrations ./migrations
# the web console (React, built by Vite into dist/console by npm run build)
COPY console ./console
# tsconfig.build.json compiles the tests' fake upstream too (the fault script and the demo use it); it stays
# in this stage: the runtime stage copies dist/src, dist/migrations and dist/console only
COPY test/support/fake-upstream.ts ./test/support/fake-upstream.ts
RUN npm run build

# --- runtime: production dependencies and the compiled server and CLI only, as a non-root user ---
FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production \
    PORT=8000 \
    DATA_DIR=/app/data
WORKDIR /app
COPY package.json package-lock.json ./
# no install scripts are needed at runtime (pg and PGlite are plain JavaScript/WebAssembly)
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/dist/migrations ./dist/migrations
COPY --from=build /app/dist/console ./dist/console
# the admin CLI on the PATH: `openai-proxy <command>` (e.g. `docker compose exec api openai-proxy org list`)
COPY --chmod=755 bin ./bin
RUN ln -s /app/bin/openai-proxy.js /usr/local/bin/openai-proxy
# DATA_DIR holds the embedded database when no DATABASE_URL is given; mount a volume there to keep it
RUN mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM drains: calls in flight get SHUTDOWN_TIMEOUT_MS (10 s by default), the process is gone 5 s after that
STOPSIGNAL SIGTERM
CMD ["node", "--max-semi-space-size=16", "--memory-balancer", "dist/src/main.js"]
