import { lazyModule } from './lazy-module';

export = lazyModule(() => require('ioredis') as object);
