import { Command } from 'nest-commander';
import { DataSource } from 'typeorm';
import { runMigrations } from '../../database/migrate';
import { AdminCommand, JsonOption } from '../admin-command';

/** The migrations the CLI applied before it started (every run migrates first, so a fresh database works). */
export class StartupMigrations {
  constructor(readonly applied: string[]) {}
}

@Command({ name: 'migrate', description: 'apply pending database migrations' })
export class MigrateCommand extends AdminCommand {
  constructor(
    private readonly startup: StartupMigrations,
    private readonly dataSource: DataSource,
  ) {
    super();
  }

  async run(_params: string[], options: JsonOption): Promise<void> {
    const applied = [...this.startup.applied, ...(await runMigrations(this.dataSource))];
    this.print(options, { applied }, () =>
      applied.length
        ? `Applied ${applied.length} migration${applied.length === 1 ? '' : 's'}:\n${applied.map((n) => `  ${n}`).join('\n')}`
        : 'No pending migrations; the schema is up to date.',
    );
  }
}
