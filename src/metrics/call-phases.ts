/**
 * Where the time of a proxied call goes, phase by phase, for every call: each phase's end is marked with
 * performance.now() on the request (a few stores per call), and at the answer's end the durations are added to
 * per-route sums that Prometheus reads (`openai_proxy_call_phase_seconds_total` / `openai_proxy_call_phases_total`:
 * their ratio is the mean of a phase). The benchmark reads them around its one-connection runs.
 *
 * - auth: token and X-User-ID (cached organization, user and key state)
 * - body: the request body read and parsed
 * - prepare: session, persona, key choice, limits, the record opened
 * - upstream: until the upstream's response headers (the upstream's own time is most of it)
 * - relay: JSON: the upstream body read, checked and captured; a stream: relayed up to its final event
 * - record: waiting for the record to be written (RECORD_WRITE=before_answer), limits settled
 * - answer: the answer (or the final event) written out until the response is finished
 */
export const CALL_PHASES = ['auth', 'body', 'prepare', 'upstream', 'relay', 'record', 'answer'] as const;
export type CallPhase = (typeof CALL_PHASES)[number];

export const PHASE = { auth: 0, body: 1, prepare: 2, upstream: 3, relay: 4, record: 5, answer: 6 } as const satisfies Record<CallPhase, number>;

/** The end of each phase (performance.now()), 0 while not reached. */
export type PhaseMarks = Float64Array;

export function newPhaseMarks(): PhaseMarks {
  return new Float64Array(CALL_PHASES.length);
}

/** Marks the end of a phase once (a retried upstream call keeps its first marks). */
export function markPhase(marks: PhaseMarks | undefined, phase: number): void {
  if (marks && marks[phase] === 0) marks[phase] = performance.now();
}

/**
 * Sums of phase durations by route: a phase not reached by a call adds nothing and is not counted for it; each
 * reached phase counts from the end of the latest phase reached before it (or the request's start).
 */
export class PhaseSums {
  readonly seconds: Float64Array;
  readonly calls: Float64Array;

  constructor(readonly routes: readonly string[]) {
    this.seconds = new Float64Array(routes.length * CALL_PHASES.length);
    this.calls = new Float64Array(routes.length * CALL_PHASES.length);
  }

  add(route: number, startedAt: number, marks: PhaseMarks): void {
    let from = startedAt;
    const base = route * CALL_PHASES.length;
    for (let i = 0; i < marks.length; i++) {
      const at = marks[i];
      if (at === 0 || at < from) continue;
      this.seconds[base + i] += (at - from) / 1000;
      this.calls[base + i]++;
      from = at;
    }
  }
}
