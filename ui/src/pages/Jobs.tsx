import { useEffect, useState } from "react";
import { useMutation, useQuery, useSubscription } from "urql";
import { ProgressBar, StatusChip } from "../components/Badges";
import { RequestState } from "../components/SourceResults";
import { graphql } from "../gql";
import { t } from "../i18n";

const JobsQuery = graphql(`
  query JobsList {
    jobs(first: 50) {
      totalCount
      edges { node { id kind status progress phase message createdAt } }
    }
  }
`);

const JobEventsSubscription = graphql(`
  subscription JobEvents {
    jobEvents { jobId at status progress phase message }
  }
`);

const CancelJob = graphql(`mutation CancelJob($id: ID!) { cancelJob(id: $id) { id status } }`);
const RetryJob = graphql(`mutation RetryJob($id: ID!) { retryJob(id: $id) { id status } }`);

export interface JobRow {
  id: string;
  kind?: string;
  status: string;
  progress: number;
  phase?: string | null;
  message?: string | null;
  createdAt?: string;
}

/** Rows with a live event applied (a job started elsewhere appears on top). */
export function applyEvent(
  rows: JobRow[],
  e: { jobId: string; status: string; progress: number; phase?: string | null; message?: string | null },
): JobRow[] {
  const i = rows.findIndex((r) => r.id === e.jobId);
  const next = { status: e.status, progress: e.progress, phase: e.phase, message: e.message };
  if (i < 0) return [{ id: e.jobId, ...next }, ...rows];
  const copy = rows.slice();
  copy[i] = { ...copy[i], ...next };
  return copy;
}

/** Every job the caller may see, live from the `jobEvents` subscription. */
export function JobsPage() {
  const [result, refetch] = useQuery({ query: JobsQuery });
  const [rows, setRows] = useState<JobRow[]>([]);
  const [{ data: live }] = useSubscription({ query: JobEventsSubscription });
  const [, cancel] = useMutation(CancelJob);
  const [, retry] = useMutation(RetryJob);

  useEffect(() => {
    if (result.data) setRows(result.data.jobs.edges.map((e) => e.node));
  }, [result.data]);
  useEffect(() => {
    if (live?.jobEvents) setRows((r) => applyEvent(r, live.jobEvents));
  }, [live]);

  const act = async (run: (v: { id: string }) => Promise<unknown>, id: string) => {
    await run({ id });
    refetch({ requestPolicy: "network-only" });
  };

  return (
    <main>
      <h1>{t.jobs.title} <span className="chip chip-info">{t.jobs.live}</span></h1>
      <RequestState fetching={result.fetching && !result.data} error={result.error} />
      {result.data && rows.length === 0 ? <p>{t.jobs.empty}</p> : null}
      <div className="table-wrap" tabIndex={0}>
        <table className="jobs">
          <thead>
            <tr>
              <th scope="col">{t.jobs.colKind}</th>
              <th scope="col">{t.jobs.colStatus}</th>
              <th scope="col">{t.jobs.colProgress}</th>
              <th scope="col">{t.jobs.colPhase}</th>
              <th scope="col"><span className="sr-only">actions</span></th>
            </tr>
          </thead>
          <tbody>
            {rows.map((j) => (
              <tr key={j.id} data-job={j.id} data-status={j.status}>
                <td>{j.kind ?? ""} <code className="uid">{j.id.slice(0, 8)}</code></td>
                <td><StatusChip status={j.status} /></td>
                <td><ProgressBar progress={j.progress} label={`${t.compare.job} ${j.id}`} /></td>
                <td className="muted">{[j.phase, j.message].filter(Boolean).join(": ")}</td>
                <td>
                  {j.status === "QUEUED" || j.status === "RUNNING" ? (
                    <button type="button" onClick={() => act(cancel, j.id)}>{t.jobs.cancel}</button>
                  ) : null}
                  {j.status === "FAILED" || j.status === "CANCELLED" ? (
                    <button type="button" onClick={() => act(retry, j.id)}>{t.jobs.retry}</button>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </main>
  );
}
