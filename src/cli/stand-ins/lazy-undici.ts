import { lazyModule } from './lazy-module';

export = lazyModule(() => require('undici') as object);
