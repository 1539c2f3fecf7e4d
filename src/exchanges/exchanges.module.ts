import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { KeysModule } from '../keys/keys.module';
import { MetricsService } from '../metrics/metrics.service';
import { ExchangeEntity } from './exchange.entity';
import { ExchangeRecorder } from './recorder/exchange-recorder.service';
import { UpstreamModule } from '../upstream/upstream.module';
import { ExchangesController } from './exchanges.controller';
import { ExchangesRepository } from './exchanges.repository';
import { ExchangesService } from './exchanges.service';
import { UnfinishedResponses } from './unfinished-responses';

/** The exchange records: written by the recorder, read only through the ExchangesRepository. */
@Module({
  imports: [TypeOrmModule.forFeature([ExchangeEntity]), KeysModule, UpstreamModule],
  controllers: [ExchangesController],
  providers: [ExchangeRecorder, ExchangesRepository, ExchangesService, UnfinishedResponses],
  exports: [ExchangeRecorder, ExchangesRepository, ExchangesService],
})
export class ExchangesModule {
  constructor(recorder: ExchangeRecorder, metrics: MetricsService) {
    // read at scrape time only
    metrics.registerRecordQueueDepth(() => recorder.queueDepth);
  }
}
