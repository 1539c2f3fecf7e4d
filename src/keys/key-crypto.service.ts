import { Injectable } from '@nestjs/common';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { AppConfig } from '../config/app-config';

const FORMAT_V1 = 1;
const NONCE = 12;
const TAG = 16;

export interface KeyOwner {
  id: string;
  organizationId: string;
  userId: string | null;
}

export class KeyDecryptionError extends Error {}

/** AES-256-GCM for stored upstream keys; the associated data binds a ciphertext to its row and owner. */
@Injectable()
export class KeyCryptoService {
  constructor(private readonly config: AppConfig) {}

  private aad(owner: KeyOwner): Buffer {
    return Buffer.from(`api_key:${owner.id}:${owner.organizationId}:${owner.userId ?? 'organization'}`, 'utf8');
  }

  encrypt(plaintext: string, owner: KeyOwner, masterKey: Buffer = this.config.encryptionKey): Buffer {
    const nonce = randomBytes(NONCE);
    const cipher = createCipheriv('aes-256-gcm', masterKey, nonce);
    cipher.setAAD(this.aad(owner));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return Buffer.concat([Buffer.from([FORMAT_V1]), nonce, cipher.getAuthTag(), ct]);
  }

  private decryptWith(blob: Buffer, owner: KeyOwner, masterKey: Buffer): string {
    if (blob.length < 1 + NONCE + TAG || blob[0] !== FORMAT_V1) throw new KeyDecryptionError('unknown key format');
    const nonce = blob.subarray(1, 1 + NONCE);
    const tag = blob.subarray(1 + NONCE, 1 + NONCE + TAG);
    const decipher = createDecipheriv('aes-256-gcm', masterKey, nonce);
    decipher.setAAD(this.aad(owner));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(blob.subarray(1 + NONCE + TAG)), decipher.final()]).toString('utf8');
  }

  /** Decrypts with the current master key, or during a rotation with the previous one. */
  decrypt(blob: Buffer, owner: KeyOwner): { plaintext: string; current: boolean } {
    try {
      return { plaintext: this.decryptWith(blob, owner, this.config.encryptionKey), current: true };
    } catch {
      if (this.config.encryptionKeyPrevious) {
        try {
          return { plaintext: this.decryptWith(blob, owner, this.config.encryptionKeyPrevious), current: false };
        } catch {
          // fall through
        }
      }
      throw new KeyDecryptionError(`stored key ${owner.id} cannot be decrypted (tampered, or another master key)`);
    }
  }
}
