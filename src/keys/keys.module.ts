import { Module } from '@nestjs/common';
import { CachedKeyResolver } from './cached-key-resolver';
import { KeyCryptoService } from './key-crypto.service';
import { KeyResolver } from './key-resolver';
import { KeysService } from './keys.service';

@Module({
  providers: [KeyCryptoService, KeysService, { provide: KeyResolver, useClass: CachedKeyResolver }],
  exports: [KeysService, KeyResolver, KeyCryptoService],
})
export class KeysModule {}
