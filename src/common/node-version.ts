/**
 * The entry points (dist/src/main.js, dist/src/cli.js) call this before anything else loads: the app's
 * dependencies need Node 24 and fail on an older Node with a stack trace that does not say so.
 * No imports, so that this file itself runs on any Node.
 */
export const REQUIRED_NODE_MAJOR = 24;

export function exitUnlessSupportedNode(name: string): void {
  const version = process.versions.node;
  if (Number(version.split('.')[0]) >= REQUIRED_NODE_MAJOR) return;
  process.stderr.write(
    `${name}: Node ${version} is too old; Node ${REQUIRED_NODE_MAJOR} is required. ` +
      'Run it through npm (npm start, npm run cli), which uses the pinned Node in node_modules/.bin, or install Node 24.\n',
  );
  process.exit(1);
}
