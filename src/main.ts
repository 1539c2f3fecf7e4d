// The server's entry point. The version check runs before the app is loaded: see common/node-version.ts.
import { exitUnlessSupportedNode } from './common/node-version';

exitUnlessSupportedNode('openai-proxy');
(require('./serve') as typeof import('./serve')).main();
