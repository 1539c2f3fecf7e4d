import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, extname, join, resolve, sep } from 'node:path';

/** The built console (`npm run build` → dist/console), found from the package root whether run from dist or src. */
export function defaultConsoleDir(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) return resolve('dist/console');
    dir = up;
  }
  return join(dir, 'dist', 'console');
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.txt': 'text/plain; charset=utf-8',
};

export interface ConsoleFile {
  body: Buffer;
  type: string;
  /** a content-hashed build asset (under assets/): cached for a year, never revalidated */
  immutable: boolean;
}

/**
 * What `/console/…` answers: a file of the build, or index.html for any other path without an extension (the
 * application's own routes: /console/requests/req_…, /console/sessions/…, /console/personas/…). Null when the console
 * is not built (an API-only installation) or the path names a file that is not there.
 */
export class ConsoleFiles {
  constructor(readonly dir: string) {}

  get present(): boolean {
    return existsSync(join(this.dir, 'index.html'));
  }

  async file(subPath: string): Promise<ConsoleFile | null> {
    let decoded: string;
    try {
      decoded = decodeURIComponent(subPath);
    } catch {
      return null;
    }
    if (decoded.includes('\0') || decoded.includes('\\')) return null;
    const parts = decoded.split('/').filter((p) => p !== '' && p !== '.');
    if (parts.includes('..')) return null;
    const relative = parts.join('/');
    const ext = extname(relative);
    if (!relative || !ext) return this.read('index.html');
    return this.read(relative);
  }

  private async read(relative: string): Promise<ConsoleFile | null> {
    const path = resolve(this.dir, relative);
    if (!path.startsWith(resolve(this.dir) + sep)) return null;
    const type = TYPES[extname(path).toLowerCase()];
    if (!type) return null;
    try {
      const body = await readFile(path);
      return { body, type, immutable: relative.startsWith('assets/') };
    } catch {
      return null;
    }
  }
}
