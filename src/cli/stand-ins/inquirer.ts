/**
 * inquirer for the admin CLI: nest-commander requires it at start-up for prompts no command uses; the real one
 * (with lodash) loads when something is first read from it.
 */
let real: Record<string, unknown> | undefined;
const inquirer = () => (real ??= require('inquirer') as Record<string, unknown>);

// inquirer 8's exports, as getters: nest-commander's `__importStar(require('inquirer'))` copies them without reading them
const standIn: Record<string, unknown> = {};
for (const name of ['prompt', 'prompts', 'createPromptModule', 'registerPrompt', 'restoreDefaultPrompts', 'Separator', 'ui']) {
  Object.defineProperty(standIn, name, { enumerable: true, get: () => inquirer()[name] });
}

export = standIn;
