import { Injectable } from '@nestjs/common';
import { AppException } from '../common/app-exception';
import { AppConfig } from '../config/app-config';
import type { CircuitStates } from '../metrics/metrics.service';
import type { ResolvedKey } from '../keys/key-resolver';

/** What a call says about its upstream: it answered, it failed, or nothing (the client went away first). */
export type CallOutcome = 'ok' | 'failed' | 'neutral';

interface Circuit {
  failures: number;
  openedAt: number | null;
  /** a probe call is under way while half open */
  probing: boolean;
}

/**
 * One circuit per upstream base URL and key: after CIRCUIT_FAILURE_THRESHOLD consecutive failures (connection
 * errors, timeouts, 5xx) calls are refused with 503 and Retry-After without reaching the upstream; after
 * CIRCUIT_COOLDOWN_MS one probe call is let through, and its outcome closes or re-opens the circuit.
 * Circuits are per key, so one organization's failing key never stops another's calls.
 */
@Injectable()
export class CircuitBreakers {
  private readonly circuits = new Map<string, Circuit>();

  constructor(private readonly config: AppConfig) {}

  private id(key: ResolvedKey): string {
    return `${key.baseUrl}\n${key.keyId}`;
  }

  /** Throws 503 when the circuit is open; returns a function to report the call's outcome. */
  enter(key: ResolvedKey): (outcome: CallOutcome) => void {
    const id = this.id(key);
    const c = this.circuits.get(id);
    if (c?.openedAt != null) {
      const waited = Date.now() - c.openedAt;
      if (waited < this.config.circuitCooldownMs || c.probing) {
        const retryAfter = Math.max(1, Math.ceil((this.config.circuitCooldownMs - Math.min(waited, this.config.circuitCooldownMs)) / 1000));
        throw new AppException('service_unavailable', 'The upstream is failing for this key; calls are paused for a moment', {
          code: 'circuit_open',
          headers: { 'Retry-After': String(retryAfter) },
        });
      }
      c.probing = true;
    }
    let reported = false;
    return (outcome: CallOutcome) => {
      if (reported) return;
      reported = true;
      this.report(id, outcome);
    };
  }

  private report(id: string, outcome: CallOutcome): void {
    if (outcome === 'ok') {
      this.circuits.delete(id);
      return;
    }
    if (outcome === 'neutral') {
      // an abandoned call neither closes nor counts: an abandoned probe just lets the next call probe instead
      const c = this.circuits.get(id);
      if (c) c.probing = false;
      return;
    }
    const c = this.circuits.get(id) ?? { failures: 0, openedAt: null, probing: false };
    c.failures++;
    if (c.probing || c.failures >= this.config.circuitFailureThreshold) c.openedAt = Date.now();
    c.probing = false;
    this.circuits.set(id, c);
  }

  states(): CircuitStates {
    const s: CircuitStates = { closed: 0, open: 0, half_open: 0 };
    const now = Date.now();
    for (const c of this.circuits.values()) {
      if (c.openedAt == null) s.closed++;
      else if (c.probing || now - c.openedAt >= this.config.circuitCooldownMs) s.half_open++;
      else s.open++;
    }
    return s;
  }
}
