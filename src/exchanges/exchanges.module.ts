import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { MetricsService } from '../metrics/metrics.service';
import { ExchangeEntity } from './exchange.entity';
import { ExchangeRecorder } from './recorder/exchange-recorder.service';
import { ExchangesController } from './exchanges.controller';
import { ExchangesRepository } from './exchanges.repository';
import { ExchangesService } from './exchanges.service';
import { UsageDailyMerger } from './usage-daily/usage-daily-merger.service';
import { UsageDailyRepository } from './usage-daily/usage-daily.repository';

/** The exchange records: written by the recorder, read only through the ExchangesRepository. */
@Module({
  imports: [TypeOrmModule.forFeature([ExchangeEntity])],
  controllers: [ExchangesController],
  providers: [ExchangeRecorder, ExchangesRepository, ExchangesService, UsageDailyRepository, UsageDailyMerger],
  exports: [ExchangeRecorder, ExchangesRepository, ExchangesService, UsageDailyRepository],
})
export class ExchangesModule {
  constructor(recorder: ExchangeRecorder, metrics: MetricsService) {
    // read at scrape time only
    metrics.registerRecordQueueDepth(() => recorder.queueDepth);
  }
}
