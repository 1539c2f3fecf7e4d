import { Module } from '@nestjs/common';
import { KeysModule } from '../keys/keys.module';
import { ModelsController } from './models.controller';
import { ModelsService } from './models.service';
import { UpstreamClient } from './upstream-client';

@Module({
  imports: [KeysModule],
  controllers: [ModelsController],
  providers: [UpstreamClient, ModelsService],
  exports: [UpstreamClient],
})
export class ProxyModule {}
