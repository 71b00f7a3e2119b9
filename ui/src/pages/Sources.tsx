import { useEffect, useState } from "react";
import { useQuery } from "urql";
import { StatusChip } from "../components/Badges";
import { RequestState } from "../components/SourceResults";
import { graphql } from "../gql";
import { t } from "../i18n";

const SourcesQuery = graphql(`
  query SourcesHealthPage {
    sources { id name kind roles health { up latencyMs checkedAt error } }
  }
`);

export const HISTORY = 30;
const POLL_MS = 5_000;

/** The latency history with one more sample (null: down), at most `HISTORY` long. */
export function pushSample(history: (number | null)[], sample: number | null): (number | null)[] {
  return [...history, sample].slice(-HISTORY);
}

/** A small line of the latency history; gaps where the archive was down. */
export function Sparkline({ samples, label }: { samples: (number | null)[]; label: string }) {
  const width = 120;
  const height = 24;
  const max = Math.max(1, ...samples.map((s) => s ?? 0));
  const step = width / Math.max(1, HISTORY - 1);
  const points = samples.map((s, i) => (s == null ? null : `${(i * step).toFixed(1)},${(height - (s / max) * (height - 2) - 1).toFixed(1)}`));
  const down = samples.filter((s) => s == null).length;
  return (
    <svg className="sparkline" width={width} height={height} role="img" aria-label={label} data-samples={samples.length} data-down={down}>
      <polyline fill="none" stroke="currentColor" strokeWidth="1.5" points={points.filter(Boolean).join(" ")} />
      {samples.map((s, i) => (s == null ? <rect key={i} x={i * step - 1} y={0} width={2} height={height} className="down-mark" /> : null))}
    </svg>
  );
}

/** Each archive's health and latency, refreshed every 5 s, with a small latency history. */
export function SourcesPage() {
  const [result, refetch] = useQuery({ query: SourcesQuery, requestPolicy: "network-only" });
  const [history, setHistory] = useState<Record<string, (number | null)[]>>({});
  useEffect(() => {
    const timer = window.setInterval(() => refetch({ requestPolicy: "network-only" }), POLL_MS);
    return () => window.clearInterval(timer);
  }, [refetch]);
  useEffect(() => {
    const sources = result.data?.sources;
    if (!sources) return;
    setHistory((h) => {
      const next = { ...h };
      for (const s of sources) next[s.id] = pushSample(h[s.id] ?? [], s.health.up ? (s.health.latencyMs ?? 0) : null);
      return next;
    });
  }, [result.data]);
  return (
    <main>
      <h1>{t.sources.title}</h1>
      <RequestState fetching={result.fetching && !result.data} error={result.error} />
      <div className="table-wrap" tabIndex={0}>
        <table className="sources">
          <thead>
            <tr>
              <th scope="col">{t.sources.colId}</th>
              <th scope="col">{t.sources.colKind}</th>
              <th scope="col">{t.sources.colRoles}</th>
              <th scope="col">{t.sources.colHealth}</th>
              <th scope="col">{t.sources.colHistory}</th>
              <th scope="col">{t.sources.colChecked}</th>
            </tr>
          </thead>
          <tbody>
            {result.data?.sources.map((s) => (
              <tr key={s.id} data-source={s.id}>
                <th scope="row">{s.name} <span className="muted">({s.id})</span></th>
                <td>{s.kind}</td>
                <td>{s.roles.join(", ")}</td>
                <td title={s.health.error ?? ""}>
                  <StatusChip status={s.health.up ? "OK" : "ERROR"} latencyMs={s.health.latencyMs} />
                </td>
                <td><Sparkline samples={history[s.id] ?? []} label={t.sources.history(s.id)} /></td>
                <td className="muted">{new Date(s.health.checkedAt).toLocaleTimeString()}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <button type="button" onClick={() => refetch({ requestPolicy: "network-only" })}>{t.sources.refresh}</button>
    </main>
  );
}
