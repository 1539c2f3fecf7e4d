import type { Response } from 'express';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** JSON lines, pulled from `lines` only as fast as the destination drains them. */
function jsonLines(lines: AsyncIterable<unknown>): Readable {
  return Readable.from(
    (async function* () {
      for await (const line of lines) yield JSON.stringify(line) + '\n';
    })(),
  );
}

/** Streams `lines` as an `application/x-ndjson` answer; a failure midway cuts the answer (it has no `end` line). */
export async function sendLines(res: Response, lines: AsyncIterable<unknown>): Promise<void> {
  res.status(200);
  res.setHeader('content-type', 'application/x-ndjson; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  await pipeline(jsonLines(lines), res).catch(() => {
    if (!res.destroyed) res.destroy();
  });
}

/** Writes `lines` to a file or stdout, with backpressure (the destination is left open). */
export async function writeLines(out: Writable, lines: AsyncIterable<unknown>): Promise<void> {
  await pipeline(jsonLines(lines), out, { end: false });
}
