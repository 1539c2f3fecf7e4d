import { CommandRunner } from 'nest-commander';

/** A command that only groups subcommands (`org`, `user`, …): alone it shows its help on stderr and exits 1. */
export abstract class CommandGroup extends CommandRunner {
  async run(): Promise<void> {
    this.command.help({ error: true });
  }
}
