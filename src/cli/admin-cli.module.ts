import { DynamicModule, Injectable, Module, OnApplicationBootstrap } from '@nestjs/common';
import { InjectCommander } from 'nest-commander';
import { JsonLogger } from '../common/logger';
import { LoggerModule } from '../common/logger.module';
import { AppConfig } from '../config/app-config';
import { ConfigModule } from '../config/config.module';
import { DatabaseModule } from '../database/database.module';
import { DatabaseHandle } from '../database/embedded-database';
import { FEATURE_MODULES } from '../feature-modules';
import * as audit from './commands/audit.command';
import * as jwt from './commands/jwt.command';
import * as key from './commands/key.command';
import * as limits from './commands/limits.command';
import { MigrateCommand, StartupMigrations } from './commands/migrate.command';
import * as org from './commands/org.command';
import * as user from './commands/user.command';

export const CLI_NAME = 'openai-proxy';

/** The part of commander's Command the CLI adjusts (commander itself is nest-commander's dependency, not ours). */
interface CommanderCommand {
  readonly commands: readonly CommanderCommand[];
  name(name: string): unknown;
  exitOverride(fn: (err: Error) => never): unknown;
  allowExcessArguments(allow: boolean): unknown;
  showHelpAfterError(displayHelp: boolean | string): unknown;
}

/**
 * nest-commander sets the exit override on the root command only; a parse error in a subcommand would call
 * process.exit() before the database is closed. Every command gets it. A command refuses stray words (an
 * unquoted `org create My Org` must not create an organization named "My"); a group (`org`, `user`, …) takes
 * them so that it can answer an unknown subcommand with its own help (see CommandGroup).
 */
@Injectable()
class CommanderSetup implements OnApplicationBootstrap {
  constructor(@InjectCommander() private readonly program: CommanderCommand) {}

  onApplicationBootstrap(): void {
    this.program.name(CLI_NAME);
    const visit = (cmd: CommanderCommand) => {
      cmd.exitOverride((err) => {
        throw err;
      });
      const group = cmd.commands.length > 0;
      cmd.allowExcessArguments(group);
      cmd.showHelpAfterError(group);
      cmd.commands.forEach(visit);
    };
    visit(this.program);
  }
}

const COMMANDS = [
  org.OrgCommand,
  org.OrgCreateCommand,
  org.OrgListCommand,
  org.OrgDisableCommand,
  org.OrgEnableCommand,
  limits.OrgShowCommand,
  limits.OrgLimitsCommand,
  org.OrgCaptureCommand,
  org.OrgRetentionCommand,
  org.OrgSafetyIdCommand,
  user.UserCommand,
  user.UserCreateCommand,
  user.UserListCommand,
  user.UserDeleteCommand,
  user.UserExportCommand,
  user.UserEraseCommand,
  limits.UserLimitsCommand,
  key.KeyCommand,
  key.KeyCreateCommand,
  key.KeyListCommand,
  key.KeyRevokeCommand,
  key.KeyShowCommand,
  key.KeyEnableCommand,
  key.OrgFallbackCommand,
  key.KeyRotateMasterCommand,
  jwt.JwtCommand,
  jwt.JwtCreateCommand,
  jwt.JwtListCommand,
  jwt.JwtRevokeCommand,
  audit.AuditCommand,
  audit.AuditListCommand,
  MigrateCommand,
];

/** The admin CLI: the server's modules and services (FEATURE_MODULES), with commands that only parse and print. */
@Module({})
export class AdminCliModule {
  static forRoot(config: AppConfig, db: DatabaseHandle, logger: JsonLogger, appliedMigrations: string[]): DynamicModule {
    return {
      module: AdminCliModule,
      imports: [ConfigModule.forRoot(config), LoggerModule.forRoot(logger), DatabaseModule.forRoot(db, `${CLI_NAME}-cli`, config.dbQueryTimeoutMs), ...FEATURE_MODULES],
      providers: [...COMMANDS, CommanderSetup, { provide: StartupMigrations, useValue: new StartupMigrations(appliedMigrations) }],
    };
  }
}
