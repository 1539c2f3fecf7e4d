import { DynamicModule, Global, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { CacheInvalidationEntity } from './cache-invalidation.entity';
import { ChangeFeedService } from './change-feed.service';
import { DatabaseHandle } from './embedded-database';
import { buildTypeOrmOptions } from './typeorm-options';

/** The connection; each feature module registers its own entities (TypeOrmModule.forFeature), loaded from there. */
@Global()
@Module({})
export class DatabaseModule {
  /** `statementTimeoutMs`: DB_QUERY_TIMEOUT_MS (see buildTypeOrmOptions) */
  static forRoot(db: DatabaseHandle, applicationName: string, statementTimeoutMs?: number): DynamicModule {
    const options = buildTypeOrmOptions(db.url, db.maxPool, applicationName, [], db.embedded, statementTimeoutMs);
    return {
      module: DatabaseModule,
      imports: [
        TypeOrmModule.forRoot({ ...options, autoLoadEntities: true, retryAttempts: 3, retryDelay: 500 }),
        TypeOrmModule.forFeature([CacheInvalidationEntity]),
      ],
      providers: [{ provide: DatabaseHandle, useValue: db }, ChangeFeedService],
      exports: [TypeOrmModule, DatabaseHandle, ChangeFeedService],
    };
  }
}
