import { userInfo } from 'node:os';
import type { ActingContext } from '../common/request-context';

/** Who made an administrative change, as the audit log names them. */
export interface AuditActor {
  /** `cli:<os user>` or `token:<jti>` */
  name: string;
  /** the internal id of the user an HTTP call acted as (never the external id: an erased user leaves no trace) */
  userId: string | null;
}

function osUserName(): string {
  try {
    return userInfo().username;
  } catch {
    // a container user without a passwd entry
    return process.env.USER || process.env.LOGNAME || `uid ${process.getuid?.() ?? 'unknown'}`;
  }
}

let cli: AuditActor | undefined;

/** The admin CLI, as the operating system user running it. */
export function cliActor(): AuditActor {
  cli ??= { name: `cli:${osUserName()}`, userId: null };
  return cli;
}

/** An HTTP call: the token it carried (by jti) and the user it acted as. */
export const tokenActor = (acting: Pick<ActingContext, 'jti' | 'userId'>): AuditActor => ({ name: `token:${acting.jti}`, userId: acting.userId });
