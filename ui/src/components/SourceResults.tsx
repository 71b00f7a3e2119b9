import { t } from "../i18n";
import { ApiError, type ApiErrorView } from "./ApiError";
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

/** A loading line or an error line for one request (with its `extensions.code`). */
export function RequestState({ fetching, error }: { fetching: boolean; error?: ApiErrorView }) {
  if (error) return <ApiError error={error} />;
  if (fetching) return <p className="muted" aria-live="polite">{t.common.loading}</p>;
  return null;
}
