import { t } from "../i18n";

export type Presence = "held" | "missing" | "unknown";

/** One archive's badge: held (green), missing (red), or unknown (grey: the archive did not
 * answer, so nothing is known of what it holds). */
export function ArchiveBadge({ id, state }: { id: string; state: Presence }) {
  const label = t.badge[state](id);
  return (
    <span className={`badge badge-${state}`} data-archive={id} data-state={state} title={label} aria-label={label}>
      {id}
    </span>
  );
}

/** The badges of one row, one per archive queried: held where it is in `presentIn`,
 * missing where in `missingFrom`, unknown otherwise (an archive that failed). */
export function ArchiveBadges(props: { archives: string[]; presentIn: string[]; missingFrom?: string[] }) {
  const held = new Set(props.presentIn);
  const missing = props.missingFrom ? new Set(props.missingFrom) : null;
  const state = (id: string): Presence =>
    held.has(id) ? "held" : !missing || missing.has(id) ? "missing" : "unknown";
  return (
    <span className="badges">
      {props.archives.map((id) => (
        <ArchiveBadge key={id} id={id} state={state(id)} />
      ))}
    </span>
  );
}

const TONE: Record<string, string> = {
  OK: "ok",
  SUCCEEDED: "ok",
  RUNNING: "info",
  QUEUED: "info",
  SKIPPED: "muted",
  CANCELLED: "muted",
  ERROR: "bad",
  TIMEOUT: "bad",
  FAILED: "bad",
};

/** A status chip (OK / ERROR / TIMEOUT, job statuses), with the latency when known. */
export function StatusChip({ status, latencyMs }: { status: string; latencyMs?: number | null }) {
  const tone = TONE[status] ?? "muted";
  const text = t.status[status] ?? status;
  return (
    <span className={`chip chip-${tone}`} data-status={status}>
      {text}
      {latencyMs != null ? <span className="latency"> · {t.common.ms(latencyMs)}</span> : null}
    </span>
  );
}

/** What a role may not see: a marker, never the value. */
export function Hidden() {
  return (
    <span className="hidden-marker" data-hidden="true" title={t.common.hiddenTitle}>
      {t.common.hidden}
    </span>
  );
}

/** A value of identity: the value, or the hidden marker when the field was not served. */
export function Identity({ value }: { value: string | null | undefined }) {
  if (value === undefined) return <Hidden />;
  return <>{value ?? t.common.none}</>;
}

/** A progress bar 0..100 % (`progress` is 0..1 as the API sends it). */
export function ProgressBar({ progress, label }: { progress: number; label: string }) {
  const pct = Math.max(0, Math.min(100, Math.round(progress * 100)));
  return (
    <div
      className="progress"
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={pct}
    >
      <div className="progress-fill" style={{ width: `${pct}%` }} />
      <span className="progress-text">{pct} %</span>
    </div>
  );
}
