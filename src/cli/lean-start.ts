import { registerHooks } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * The packages the admin CLI loads through the server's modules but never runs, each with its stand-in in stand-ins/.
 * Loading them was most of a command's start-up time (es-toolkit under @nestjs/swagger, lodash under inquirer,
 * undici): without them a command starts with about 30% less CPU time, on the same modules and services.
 */
const STAND_INS: Readonly<Record<string, string>> = {
  '@nestjs/swagger': 'api-docs', // the OpenAPI decorators: only the server's /docs reads what they record
  inquirer: 'inquirer', // nest-commander's interactive prompts: no command asks anything
  undici: 'lazy-undici', // the upstream connection pools
  ioredis: 'lazy-ioredis', // the Redis limit counters, with REDIS_URL
  express: 'lazy-express', // the HTTP body parsers
};

/**
 * Sends the CLI's require() of those packages to their stand-ins. Only require(): an ES module importing one gets
 * the real package, and so does the stand-in itself.
 */
export function useCliStandIns(): void {
  const dir = join(__dirname, 'stand-ins');
  const dirUrl = `${pathToFileURL(dir).href}/`;
  registerHooks({
    resolve(specifier, context, next) {
      const standIn = Object.hasOwn(STAND_INS, specifier) ? STAND_INS[specifier] : undefined;
      if (standIn === undefined || !context.conditions.includes('require') || context.parentURL?.startsWith(dirUrl)) {
        return next(specifier, context);
      }
      return { url: pathToFileURL(join(dir, `${standIn}.js`)).href, format: 'commonjs', shortCircuit: true };
    },
  });
}
