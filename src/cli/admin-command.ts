import { CommandRunner, Option } from 'nest-commander';

export interface JsonOption {
  json?: boolean;
}

/** Parses `--json` for every command and prints either one JSON object or prose, nothing else. */
export abstract class AdminCommand<O extends JsonOption = JsonOption> extends CommandRunner {
  abstract run(params: string[], options: O): Promise<void>;

  @Option({ flags: '--json', description: 'print one JSON object instead of prose' })
  parseJson(): boolean {
    return true;
  }

  protected print(options: JsonOption, json: unknown, prose: () => string): void {
    process.stdout.write(options.json ? JSON.stringify(json) + '\n' : prose().replace(/\n*$/, '\n'));
  }
}

/** An upstream key as the CLI shows it: never the key, only its last four characters. */
export const masked = (last4: string): string => `…${last4}`;

/** A plain text table: one header row, columns padded to their widest cell. */
export function table(headers: string[], rows: (string | null | undefined)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => c ?? '-'))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n');
}

/** `label: value` lines under a title, values aligned. */
export function record(title: string, fields: [string, string | null | undefined][]): string {
  const width = Math.max(...fields.map(([k]) => k.length)) + 1;
  return [title, ...fields.map(([k, v]) => `  ${(k + ':').padEnd(width)} ${v ?? '-'}`)].join('\n');
}
