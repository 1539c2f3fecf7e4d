#!/usr/bin/env node
// Refuses to go on under an older Node: the project is built and tested on Node 24 LTS.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  console.error(
    `openai-proxy: Node ${process.versions.node} is too old; Node 24 is required. ` +
      'Run scripts through npm (which uses the pinned node in node_modules/.bin) or install Node 24.',
  );
  process.exit(1);
}
