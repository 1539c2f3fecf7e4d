import type { PrivacySettingsView } from '../../auth/organizations.service';

const days = (n: number | null, what: string) => (n === null ? `kept (no ${what} retention)` : `${n} days`);

/** The privacy lines of `org show` and of the commands that change them. */
export function privacyLines(s: PrivacySettingsView): [string, string][] {
  return [
    ['capture', s.capture_mode],
    ['bodies kept', days(s.content_retention_days, 'content')],
    ['exchanges kept', days(s.retention_days, 'exchange')],
    ['safety_identifier', s.safety_identifier ? 'on' : 'off'],
  ];
}
