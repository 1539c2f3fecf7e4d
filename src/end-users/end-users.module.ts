import { Module } from '@nestjs/common';
import { AuditModule } from '../audit/audit.module';
import { ExchangesModule } from '../exchanges/exchanges.module';
import { LimitsModule } from '../limits/limits.module';
import { RetentionModule } from '../retention/retention.module';
import { EndUserDataRepository } from './end-user-data.repository';
import { EndUsersController } from './end-users.controller';
import { EndUsersService } from './end-users.service';

/** End users' data: export (JSON lines) and erasure, over HTTP (`admin` scope) and in the CLI. */
@Module({
  imports: [AuditModule, ExchangesModule, LimitsModule, RetentionModule],
  controllers: [EndUsersController],
  providers: [EndUserDataRepository, EndUsersService],
  exports: [EndUsersService],
})
export class EndUsersModule {}
