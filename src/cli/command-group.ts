import { CommandRunner } from 'nest-commander';

/**
 * A command that only groups subcommands (`org`, `user`, …): alone it shows its help on stderr and exits 1;
 * with a word that is none of its subcommands, it says so and shows its help (exit 1).
 */
export abstract class CommandGroup extends CommandRunner {
  async run(params: string[]): Promise<void> {
    if (params.length > 0) {
      this.command.error(`error: unknown command '${params[0]}' for '${this.command.name()}'`, { code: 'commander.unknownCommand' });
    }
    this.command.help({ error: true });
  }
}
