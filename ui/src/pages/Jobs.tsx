import { useEffect, useState } from "react";
import { useMutation, useQuery, useSubscription } from "urql";
import { ProgressBar, StatusChip } from "../components/Badges";
import { RequestState } from "../components/SourceResults";
import { graphql } from "../gql";
import type { JobKind, JobStatus } from "../gql/graphql";
import { t } from "../i18n";
import { ApiError } from "../components/ApiError";
import { Link, navigate, useLocation } from "../router";

const JobsQuery = graphql(`
  query JobsList($kind: JobKind, $status: JobStatus) {
    jobs(kind: $kind, status: $status, first: 50) {
      totalCount
      edges { node { id kind status progress phase message createdAt } }
    }
  }
`);

const JobEventsSubscription = graphql(`
  subscription JobEvents($kinds: [JobKind!]) {
    jobEvents(kinds: $kinds) { jobId at status progress phase message }
  }
`);

export const CancelJob = graphql(`mutation CancelJob($id: ID!) { cancelJob(id: $id) { id status } }`);
export const RetryJob = graphql(`mutation RetryJob($id: ID!) { retryJob(id: $id) { id status } }`);

export const KINDS: JobKind[] = ["SYNC", "ANONYMIZE", "RTSTRUCT", "IMPORT", "INDEX"];
export const STATUSES: JobStatus[] = ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];

export interface JobRow {
  id: string;
  kind?: string;
  status: string;
  progress: number;
  phase?: string | null;
  message?: string | null;
  createdAt?: string;
}

type LiveEvent = { jobId: string; status: string; progress: number; phase?: string | null; message?: string | null };

/** Rows with a live event applied: a known job updated, a new one (started in another tab or
 * by a script) added on top when it passes the status filter. */
export function applyEvent(rows: JobRow[], e: LiveEvent, status?: string | null): JobRow[] {
  const i = rows.findIndex((r) => r.id === e.jobId);
  const next = { status: e.status, progress: e.progress, phase: e.phase, message: e.message };
  if (i < 0) return status && e.status !== status ? rows : [{ id: e.jobId, ...next }, ...rows];
  const copy = rows.slice();
  copy[i] = { ...copy[i], ...next };
  return copy;
}

/** Cancel (queued or running) and retry (failed or cancelled) buttons of one job. */
export function JobActions({ id, status, onDone }: { id: string; status: string; onDone: () => void }) {
  const [cancelled, cancel] = useMutation(CancelJob);
  const [retried, retry] = useMutation(RetryJob);
  const run = async (action: (v: { id: string }) => Promise<unknown>) => {
    await action({ id });
    onDone();
  };
  const errors = (
    <>
      <ApiError error={cancelled.error} />
      <ApiError error={retried.error} />
    </>
  );
  if (status === "QUEUED" || status === "RUNNING")
    return <><button type="button" onClick={() => run(cancel)}>{t.jobs.cancel}</button>{errors}</>;
  if (status === "FAILED" || status === "CANCELLED")
    return <><button type="button" onClick={() => run(retry)}>{t.jobs.retry}</button>{errors}</>;
  return errors;
}

/** Every job the caller may see, live from the `jobEvents` subscription, filtered by kind
 * and status (in the URL). */
export function JobsPage() {
  const { search } = useLocation();
  const kind = (KINDS as string[]).includes(search.get("kind") ?? "") ? (search.get("kind") as JobKind) : null;
  const status = (STATUSES as string[]).includes(search.get("status") ?? "")
    ? (search.get("status") as JobStatus)
    : null;
  const [result, refetch] = useQuery({ query: JobsQuery, variables: { kind, status } });
  const [rows, setRows] = useState<JobRow[]>([]);
  const [{ data: live }] = useSubscription({ query: JobEventsSubscription, variables: { kinds: kind ? [kind] : null } });

  useEffect(() => {
    if (result.data) setRows(result.data.jobs.edges.map((e) => e.node));
  }, [result.data]);
  useEffect(() => {
    if (live?.jobEvents) setRows((r) => applyEvent(r, live.jobEvents, status));
  }, [live, status]);

  const filter = (key: string, value: string) => {
    const p = new URLSearchParams(search);
    if (value) p.set(key, value);
    else p.delete(key);
    const q = p.toString();
    navigate(q ? `/jobs?${q}` : "/jobs");
  };

  return (
    <main>
      <h1>{t.jobs.title} <span className="chip chip-info">{t.jobs.live}</span></h1>
      <div className="filters">
        <label>
          {t.jobs.colKind}
          <select name="kind" value={kind ?? ""} onChange={(e) => filter("kind", e.target.value)}>
            <option value="">{t.jobs.all}</option>
            {KINDS.map((k) => <option key={k} value={k}>{k}</option>)}
          </select>
        </label>
        <label>
          {t.jobs.colStatus}
          <select name="status" value={status ?? ""} onChange={(e) => filter("status", e.target.value)}>
            <option value="">{t.jobs.all}</option>
            {STATUSES.map((s) => <option key={s} value={s}>{t.status[s] ?? s}</option>)}
          </select>
        </label>
      </div>
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
              <th scope="col"><span className="sr-only">{t.jobs.colActions}</span></th>
            </tr>
          </thead>
          <tbody>
            {rows.map((j) => (
              <tr key={j.id} data-job={j.id} data-status={j.status}>
                <td>
                  {j.kind ?? ""}{" "}
                  <Link href={`/jobs/${encodeURIComponent(j.id)}`} aria-label={t.jobs.open(j.id)}>
                    <code className="uid">{j.id.slice(0, 8)}</code>
                  </Link>
                </td>
                <td><StatusChip status={j.status} /></td>
                <td><ProgressBar progress={j.progress} label={`${t.compare.job} ${j.id}`} /></td>
                <td className="muted">{[j.phase, j.message].filter(Boolean).join(": ")}</td>
                <td>
                  <JobActions id={j.id} status={j.status} onDone={() => refetch({ requestPolicy: "network-only" })} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </main>
  );
}
