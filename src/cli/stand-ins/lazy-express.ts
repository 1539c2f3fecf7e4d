import { lazyModule } from './lazy-module';

export = lazyModule(() => require('express') as object);
