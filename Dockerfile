# The indexer worker image: `refresh worker <task> <input-json> [--status-file PATH]`, the same code
# the local runner starts as a process. ECS passes the task and its input as the container command
# (see runners/ecs.ts). Build: docker build -t refresh-worker .
FROM node:20-slim AS build
WORKDIR /app
# better-sqlite3 compiles from source when no prebuilt binary matches the platform
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# the package's `prepare` script builds; the sources are not copied yet, so skip scripts here and
# build the SQLite binding explicitly
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY tsconfig.json tsconfig.build.json index.ts ./
COPY core core
COPY aws aws
COPY search search
COPY runners runners
COPY assets assets
COPY sensors sensors
COPY daemon daemon
COPY cli cli
COPY bench bench
# keep refresh's dependencies and the peers the worker uses (zod; @aws-sdk/client-s3 for s3:// inputs,
# outputs and status), at the versions `npm ci` installed from the lock file; drop the other dev tools
RUN npm run build \
 && node -e "const fs = require('node:fs'); const p = JSON.parse(fs.readFileSync('package.json', 'utf8')); \
      for (const peer of ['zod', '@aws-sdk/client-s3']) { p.dependencies[peer] = p.devDependencies[peer]; delete p.devDependencies[peer] } \
      fs.writeFileSync('package.json', JSON.stringify(p, null, 2))" \
 && npm prune --omit=dev --ignore-scripts

FROM node:20-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
USER node
ENTRYPOINT ["node", "dist/cli/main.js", "worker"]
