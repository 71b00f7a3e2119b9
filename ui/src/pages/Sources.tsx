import { useEffect } from "react";
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

/** Each archive's health and latency, refreshed every 10 s. */
export function SourcesPage() {
  const [result, refetch] = useQuery({ query: SourcesQuery });
  useEffect(() => {
    const timer = window.setInterval(() => refetch({ requestPolicy: "network-only" }), 10_000);
    return () => window.clearInterval(timer);
  }, [refetch]);
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
