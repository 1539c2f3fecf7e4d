#!/usr/bin/env node
'use strict';
// The package's executable: the admin CLI (see `openai-proxy --help`). dist/src/cli.js checks the Node version
// before it loads anything that needs Node 24 (src/common/node-version.ts).
require('../dist/src/cli.js');
