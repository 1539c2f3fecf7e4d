import { DynamicModule, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { JwtAuthGuard, UserIdGuard } from './auth/auth.guards';
import { JsonLogger } from './common/logger';
import { LoggerModule } from './common/logger.module';
import { ConsoleModule } from './console/console.module';
import { AppConfig } from './config/app-config';
import { ConfigModule } from './config/config.module';
import { DatabaseModule } from './database/database.module';
import { DatabaseHandle } from './database/embedded-database';
import { FEATURE_MODULES } from './feature-modules';

@Module({})
export class AppModule {
  static forRoot(config: AppConfig, db: DatabaseHandle, logger: JsonLogger, applicationName = 'openai-proxy'): DynamicModule {
    return {
      module: AppModule,
      imports: [ConfigModule.forRoot(config), LoggerModule.forRoot(logger), DatabaseModule.forRoot(db, applicationName, config.dbQueryTimeoutMs), ...FEATURE_MODULES, ConsoleModule],
      providers: [
        // order matters: the token is checked before X-User-ID
        { provide: APP_GUARD, useExisting: JwtAuthGuard },
        { provide: APP_GUARD, useExisting: UserIdGuard },
      ],
    };
  }
}
