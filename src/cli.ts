// The admin CLI's entry point. The version check runs before the app is loaded: see common/node-version.ts.
import { exitUnlessSupportedNode } from './common/node-version';

exitUnlessSupportedNode('openai-proxy');
(require('./cli/lean-start') as typeof import('./cli/lean-start')).useCliStandIns();
(require('./cli/run') as typeof import('./cli/run')).runCli();
