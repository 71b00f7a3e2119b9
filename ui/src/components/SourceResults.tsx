import { t } from "../i18n";
import { StatusChip } from "./Badges";

export interface SourceResultView {
  source: { id: string };
  status: string;
  latencyMs?: number | null;
  count?: number | null;
  error?: string | null;
}

/** The per-archive status of a query, always shown: a down archive is obvious. */
export function SourceResults({ results }: { results: SourceResultView[] }) {
  return (
    <section className="source-results" aria-label={t.search.sourceStatus}>
      <span className="muted">{t.search.sourceStatus}:</span>
      {results.map((r) => (
        <span key={r.source.id} className="source-result" data-source={r.source.id} title={r.error ?? ""}>
          <strong>{r.source.id}</strong> <StatusChip status={r.status} latencyMs={r.latencyMs} />
          {r.count != null ? <span className="muted"> ({r.count})</span> : null}
        </span>
      ))}
    </section>
  );
}

/** A loading line or an error line for one request. */
export function RequestState({ fetching, error }: { fetching: boolean; error?: { message: string } }) {
  if (error) return <p className="error" role="alert">{t.common.error(error.message)}</p>;
  if (fetching) return <p className="muted" aria-live="polite">{t.common.loading}</p>;
  return null;
}
