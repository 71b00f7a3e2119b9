import { useEffect, useState } from "react";
import { useQuery, useSubscription } from "urql";
import { ProgressBar, StatusChip } from "../components/Badges";
import { RequestState } from "../components/SourceResults";
import { graphql } from "../gql";
import { t } from "../i18n";
import { JobActions } from "./Jobs";

const JobQuery = graphql(`
  query JobPage($id: ID!) {
    job(id: $id) {
      id kind status progress phase message attempts
      createdAt startedAt finishedAt requestedBy
      input result error
      events { at status progress phase message }
    }
  }
`);

const JobLive = graphql(`
  subscription JobPageLive($id: ID!) {
    jobProgress(id: $id) { jobId at status progress phase message }
  }
`);

export interface TimelineEvent {
  at: string;
  status: string;
  progress: number;
  phase?: string | null;
  message?: string | null;
}

/** The timeline with a live event added once (the subscription repeats the current state). */
export function withEvent(events: TimelineEvent[], e: TimelineEvent): TimelineEvent[] {
  const same = (a: TimelineEvent) =>
    a.at === e.at && a.status === e.status && a.progress === e.progress && a.phase === e.phase;
  return events.some(same) ? events : [...events, e];
}

/** One job: its state, live progress, event timeline, input, result and error. */
export function JobPage({ id }: { id: string }) {
  const [result, refetch] = useQuery({ query: JobQuery, variables: { id } });
  const [{ data: live }] = useSubscription({ query: JobLive, variables: { id } });
  const [events, setEvents] = useState<TimelineEvent[]>([]);
  const job = result.data?.job;
  useEffect(() => {
    if (job) setEvents(job.events);
  }, [job]);
  const last = live?.jobProgress;
  useEffect(() => {
    if (!last) return;
    setEvents((e) => withEvent(e, last));
    if (["SUCCEEDED", "FAILED", "CANCELLED"].includes(last.status)) refetch({ requestPolicy: "network-only" });
  }, [last, refetch]);
  const status = last?.status ?? job?.status;
  const progress = last?.progress ?? job?.progress ?? 0;
  return (
    <main>
      <h1>{t.job.title(job?.kind ?? "", id)}</h1>
      <RequestState fetching={result.fetching && !job} error={result.error} />
      {result.data && !job ? <p>{t.job.notFound}</p> : null}
      {job && status ? (
        <>
          <div className="job-progress" data-status={status}>
            <StatusChip status={status} />
            <ProgressBar progress={progress} label={`${t.compare.job} ${id}`} />
            <JobActions id={id} status={status} onDone={() => refetch({ requestPolicy: "network-only" })} />
          </div>
          <dl className="facts">
            <dt>{t.job.requestedBy}</dt><dd>{job.requestedBy}</dd>
            <dt>{t.job.created}</dt><dd>{new Date(job.createdAt).toLocaleString()}</dd>
            <dt>{t.job.finished}</dt><dd>{job.finishedAt ? new Date(job.finishedAt).toLocaleString() : t.common.none}</dd>
            <dt>{t.job.attempts}</dt><dd>{job.attempts}</dd>
          </dl>
          {job.error ? <p className="error" role="alert">{job.error}</p> : null}
          <h2>{t.job.timeline}</h2>
          <ol className="timeline">
            {events.map((e, i) => (
              <li key={i} data-status={e.status}>
                <time dateTime={e.at}>{new Date(e.at).toLocaleTimeString()}</time>{" "}
                <StatusChip status={e.status} /> {Math.round(e.progress * 100)} %{" "}
                <span className="muted">{[e.phase, e.message].filter(Boolean).join(": ")}</span>
              </li>
            ))}
          </ol>
          <h2>{t.job.input}</h2>
          <pre className="json" tabIndex={0}>{JSON.stringify(job.input, null, 2)}</pre>
          {job.result != null ? (
            <>
              <h2>{t.job.result}</h2>
              <pre className="json" tabIndex={0}>{JSON.stringify(job.result, null, 2)}</pre>
            </>
          ) : null}
        </>
      ) : null}
    </main>
  );
}
