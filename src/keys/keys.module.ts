import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuditModule } from '../audit/audit.module';
import { OrganizationEntity } from '../auth/organization.entity';
import { UserEntity } from '../auth/user.entity';
import { ApiKeyEntity } from './api-key.entity';
import { CachedKeyResolver } from './cached-key-resolver';
import { KeyCryptoService } from './key-crypto.service';
import { KeyHealth } from './key-health.service';
import { KeyResolver } from './key-resolver';
import { KeysService } from './keys.service';

@Module({
  imports: [AuditModule, TypeOrmModule.forFeature([ApiKeyEntity, OrganizationEntity, UserEntity])],
  providers: [KeyCryptoService, KeysService, KeyHealth, { provide: KeyResolver, useClass: CachedKeyResolver }],
  exports: [KeysService, KeyResolver, KeyCryptoService, KeyHealth],
})
export class KeysModule {}
