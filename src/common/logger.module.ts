import { DynamicModule, Global, Module } from '@nestjs/common';
import { JsonLogger } from './logger';

/** The process's one logger (made before the app, which logs through it too), for every module to inject. */
@Global()
@Module({})
export class LoggerModule {
  static forRoot(logger: JsonLogger): DynamicModule {
    return {
      module: LoggerModule,
      providers: [{ provide: JsonLogger, useValue: logger }],
      exports: [JsonLogger],
    };
  }
}
