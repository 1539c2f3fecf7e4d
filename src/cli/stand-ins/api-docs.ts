import { dirname, join } from 'node:path';

/**
 * @nestjs/swagger for the admin CLI. Its decorators (ApiProperty, ApiOperation, …) only record the OpenAPI document
 * that the HTTP server serves at /docs; the CLI builds none, so here they record nothing. DECORATORS is the real
 * one (the app reads and writes that metadata itself); anything else loads the real package when first read.
 */
const constants = require(join(dirname(require.resolve('@nestjs/swagger')), 'constants.js')) as Record<string, unknown>;
let real: Record<string | symbol, unknown> | undefined;

const noDocs = () => () => undefined;

function getSchemaPath(model: string | { name: string }): string {
  return `#/components/schemas/${typeof model === 'string' ? model : model.name}`;
}

export = new Proxy(
  {},
  {
    get(_target, name) {
      if (name === 'DECORATORS' || name === 'DECORATORS_PREFIX') return constants[name];
      if (name === 'getSchemaPath') return getSchemaPath;
      if (typeof name === 'string' && name.startsWith('Api')) return noDocs;
      if (name === '__esModule') return true;
      real ??= require('@nestjs/swagger') as Record<string | symbol, unknown>;
      return real[name];
    },
  },
);
