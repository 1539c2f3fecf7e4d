import 'reflect-metadata';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { buildTypeOrmOptions } from './typeorm-options';

// For the TypeORM CLI (run on the built file): `npx typeorm -d dist/src/database/data-source.js migration:generate …`
// Every feature's entity, found by its file name (the modules register them one by one in the app).
const ENTITY_FILES = join(__dirname, '..', '**', '*.entity.{js,ts}');
const url = process.env.DATABASE_URL;
if (!url) throw new Error('DATABASE_URL is required for the TypeORM CLI');
export default new DataSource(buildTypeOrmOptions(url, 2, 'openai-proxy-typeorm-cli', [ENTITY_FILES]));
