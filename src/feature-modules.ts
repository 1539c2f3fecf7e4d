import { AuthModule } from './auth/auth.module';
import { HealthModule } from './health/health.module';
import { KeysModule } from './keys/keys.module';
import { ProxyModule } from './proxy/proxy.module';

/** The feature modules, shared by the HTTP server (AppModule) and the admin CLI (AdminCliModule). */
export const FEATURE_MODULES = [AuthModule, KeysModule, ProxyModule, HealthModule];
