import { t } from "../i18n";

/** One archive's badge: held (green) or missing (red). */
export function ArchiveBadge({ id, held }: { id: string; held: boolean }) {
  const label = held ? t.badge.held(id) : t.badge.missing(id);
  return (
    <span
      className={`badge ${held ? "badge-held" : "badge-missing"}`}
      data-archive={id}
      data-state={held ? "held" : "missing"}
      title={label}
      aria-label={label}
    >
      {id}
    </span>
  );
}

/** The badges of one row: every archive queried, held where it is in `presentIn`. */
export function ArchiveBadges({ archives, presentIn }: { archives: string[]; presentIn: string[] }) {
  const held = new Set(presentIn);
  return (
    <span className="badges">
      {archives.map((id) => (
        <ArchiveBadge key={id} id={id} held={held.has(id)} />
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
