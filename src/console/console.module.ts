import { Module } from '@nestjs/common';
import { ConsoleController } from './console.controller';
import { ConsoleFiles, defaultConsoleDir } from './console-files';

/** Serves the built web console at /console (HTTP server only; the admin CLI does not load it). */
@Module({
  controllers: [ConsoleController],
  providers: [{ provide: ConsoleFiles, useFactory: () => new ConsoleFiles(defaultConsoleDir()) }],
})
export class ConsoleModule {}
