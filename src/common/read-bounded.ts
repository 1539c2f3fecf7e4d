import type { Readable } from 'node:stream';

export class BodyTooLarge extends Error {}

/**
 * Reads a stream whole, up to `max` bytes; past that it rejects with BodyTooLarge and destroys the stream, or only
 * pauses it with `keepOpen` (a request whose socket must still carry the 413). A stream that closes before its end
 * rejects too.
 */
export function readBounded(body: Readable, max: number, keepOpen = false): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        cleanup();
        if (keepOpen) body.pause();
        else body.destroy();
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onClose = () => {
      cleanup();
      reject(new Error('the stream closed before its end'));
    };
    const cleanup = () => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      body.off('close', onClose);
    };
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onError);
    body.once('close', onClose);
  });
}
