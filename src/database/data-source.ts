import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { buildTypeOrmOptions } from './typeorm-options';

// For the TypeORM CLI (run on the built file): `npx typeorm -d dist/src/database/data-source.js migration:generate …`
const url = process.env.DATABASE_URL;
if (!url) throw new Error('DATABASE_URL is required for the TypeORM CLI');
export default new DataSource(buildTypeOrmOptions(url, 2, 'openai-proxy-typeorm-cli'));
