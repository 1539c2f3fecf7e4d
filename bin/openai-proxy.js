#!/usr/bin/env node
'use strict';
// The package's executable: the admin CLI (see `openai-proxy --help`). CommonJS so that an old Node can still
// read this file and say why it refuses to go on (the same check as scripts/check-node.js).
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  console.error(`openai-proxy: Node ${process.versions.node} is too old; Node 24 is required.`);
  process.exit(1);
}
require('../dist/src/cli.js');
