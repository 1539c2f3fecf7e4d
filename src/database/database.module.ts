import { DynamicModule, Global, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ENTITIES } from './entities';
import { ChangeFeedService } from './change-feed.service';
import { DatabaseHandle } from './embedded-database';
import { buildTypeOrmOptions } from './typeorm-options';

@Global()
@Module({})
export class DatabaseModule {
  static forRoot(db: DatabaseHandle, applicationName: string): DynamicModule {
    return {
      module: DatabaseModule,
      imports: [
        TypeOrmModule.forRoot({ ...buildTypeOrmOptions(db.url, db.maxPool, applicationName), retryAttempts: 3, retryDelay: 500 }),
        TypeOrmModule.forFeature(ENTITIES),
      ],
      providers: [{ provide: DatabaseHandle, useValue: db }, ChangeFeedService],
      exports: [TypeOrmModule, DatabaseHandle, ChangeFeedService],
    };
  }
}
