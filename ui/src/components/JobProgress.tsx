import { useEffect } from "react";
import { useSubscription } from "urql";
import { graphql } from "../gql";
import { t } from "../i18n";
import { ApiError } from "./ApiError";
import { ProgressBar, StatusChip } from "./Badges";

const JobProgressSubscription = graphql(`
  subscription JobProgress($id: ID!) {
    jobProgress(id: $id) { jobId at status progress phase message }
  }
`);

const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);

/** One job's live progress (the `jobProgress` subscription); `onDone` once it ends. */
export function JobProgress({ id, onDone }: { id: string; onDone?: (status: string) => void }) {
  const [{ data, error }] = useSubscription({ query: JobProgressSubscription, variables: { id } });
  const event = data?.jobProgress;
  const status = event?.status;
  useEffect(() => {
    if (status && TERMINAL.has(status)) onDone?.(status);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [status]);
  return (
    <div className="job-progress" data-job={id} data-status={status ?? ""}>
      <span>{t.compare.job} <code>{id}</code></span>{" "}
      {status ? <StatusChip status={status} /> : <span className="muted">{t.common.loading}</span>}
      <ProgressBar progress={event?.progress ?? 0} label={`${t.compare.job} ${id}`} />
      {event?.phase || event?.message ? (
        <span className="muted">{[event.phase, event.message].filter(Boolean).join(": ")}</span>
      ) : null}
      <ApiError error={error} />
    </div>
  );
}
