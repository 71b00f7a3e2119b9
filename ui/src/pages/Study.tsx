import { useState } from "react";
import { useMutation, useQuery } from "urql";
import { Hidden, StatusChip } from "../components/Badges";
import { AnonymizePanel } from "../components/Anonymize";
import { JobProgress } from "../components/JobProgress";
import { RtStructPanel } from "../components/RtStruct";
import { RequestState } from "../components/SourceResults";
import { graphql } from "../gql";
import { t } from "../i18n";
import { ApiError } from "../components/ApiError";
import { viewerUrl } from "../router";
import { maySync, seesIdentity, type SessionUser } from "../session";
import { ConflictTable } from "./Patient";

const CompareQuery = graphql(`
  query CompareStudy($uid: String!, $identity: Boolean!) {
    sources { id roles }
    study(studyInstanceUid: $uid) { modalities }
    compareStudy(studyInstanceUid: $uid) {
      studyInstanceUid
      inSync
      sources { source { id name roles } present series instances latencyMs status }
      missing { level uid missingFrom { id } presentIn { id } }
      conflicts @include(if: $identity) { field values { source { id } value } }
    }
  }
`);

const SyncMutation = graphql(`
  mutation SyncMissing($input: SyncInput!) {
    syncStudies(input: $input) { id status }
  }
`);

const JobResultQuery = graphql(`
  query SyncJobResult($id: ID!) {
    job(id: $id) { id status result error }
  }
`);

/** What a dry-run sync would copy, from its job's result. */
export function previewText(result: unknown): string | null {
  if (!result || typeof result !== "object") return null;
  const r = result as Record<string, unknown>;
  const n = Number(r.instancesToTransfer ?? 0);
  const conflicts = Number(r.conflicts ?? 0);
  return t.compare.wouldCopy(n, conflicts);
}

interface Row {
  source: { id: string; roles: string[] };
  present: boolean;
  instances?: number | null;
  status: string;
}

/** The archives a sync could fill, each with the archive to copy from (most instances). */
export function syncPlans(rows: Row[], missingFrom: string[]): { to: string; from: string }[] {
  const donors = rows
    .filter((r) => r.present && r.status === "OK")
    .sort((a, b) => (b.instances ?? 0) - (a.instances ?? 0));
  const best = donors[0];
  if (!best) return [];
  const short = new Set(missingFrom);
  return rows
    .filter((r) => r.status === "OK" && r.source.roles.includes("STORE"))
    .filter((r) => !r.present || short.has(r.source.id) || (r.instances ?? 0) < (best.instances ?? 0))
    .filter((r) => r.source.id !== best.source.id)
    .map((r) => ({ to: r.source.id, from: best.source.id }));
}

/** A study compared across archives: counts, missing objects, conflicts; sync actions. */
export function StudyPage({ uid, user }: { uid: string; user: SessionUser }) {
  const identity = seesIdentity(user);
  const [result, refetch] = useQuery({ query: CompareQuery, variables: { uid, identity } });
  const [sync, startSync] = useMutation(SyncMutation);
  const [jobs, setJobs] = useState<string[]>([]);
  const [previews, setPreviews] = useState<Record<string, string>>({});
  const c = result.data?.compareStudy;
  const plans = c ? syncPlans(c.sources, c.missing.flatMap((m) => m.missingFrom.map((s) => s.id))) : [];

  const start = async (from: string, to: string, dryRun: boolean) => {
    const answer = await startSync({ input: { from, to, studyInstanceUids: [uid], dryRun } });
    const id = answer.data?.syncStudies.id;
    if (!id) return;
    if (dryRun) setPreviews((p) => ({ ...p, [to]: id }));
    else setJobs((j) => [...j, id]);
  };

  return (
    <main>
      <h1>{t.compare.title}</h1>
      <p><code className="uid">{uid}</code></p>
      <a className="button" href={viewerUrl(uid)}>
        {t.patient.openViewer}
      </a>
      <RequestState fetching={result.fetching && !c} error={result.error} />
      {c ? (
        <>
          <p className={c.inSync ? "ok" : "bad"} data-in-sync={String(c.inSync)}>
            {c.inSync ? t.compare.inSync : t.compare.notInSync}
          </p>
          <div className="table-wrap" tabIndex={0}>
            <table className="compare">
              <thead>
                <tr>
                  <th scope="col">{t.compare.colArchive}</th>
                  <th scope="col">{t.compare.colPresent}</th>
                  <th scope="col">{t.compare.colSeries}</th>
                  <th scope="col">{t.compare.colInstances}</th>
                  <th scope="col">{t.compare.colStatus}</th>
                </tr>
              </thead>
              <tbody>
                {c.sources.map((s) => (
                  <tr key={s.source.id} data-archive={s.source.id}>
                    <th scope="row">{s.source.id}</th>
                    <td className={s.present ? "ok" : "bad"}>{s.present ? t.compare.present : t.compare.absent}</td>
                    <td>{s.series ?? t.common.none}</td>
                    <td>{s.instances ?? t.common.none}</td>
                    <td><StatusChip status={s.status} latencyMs={s.latencyMs} /></td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <h2>{t.compare.missing}</h2>
          {c.missing.length === 0 ? (
            <p className="muted">{t.compare.noMissing}</p>
          ) : (
            <div className="table-wrap" tabIndex={0}>
              <table className="missing">
                <thead>
                  <tr>
                    <th scope="col">{t.compare.colLevel}</th>
                    <th scope="col">{t.compare.colUid}</th>
                    <th scope="col">{t.compare.colMissingFrom}</th>
                    <th scope="col">{t.compare.colPresentIn}</th>
                  </tr>
                </thead>
                <tbody>
                  {c.missing.map((m) => (
                    <tr key={`${m.level}:${m.uid}`}>
                      <td>{m.level}</td>
                      <td><code className="uid">{m.uid}</code></td>
                      <td className="bad">{m.missingFrom.map((s) => s.id).join(", ")}</td>
                      <td>{m.presentIn.map((s) => s.id).join(", ")}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          <h2>{t.compare.conflicts}</h2>
          {c.conflicts === undefined ? (
            <Hidden />
          ) : c.conflicts.length ? (
            <ConflictTable conflicts={c.conflicts} />
          ) : (
            <p className="muted">{t.compare.noConflicts}</p>
          )}
          <section className="actions">
            {maySync(user) ? (
              plans.map((p) => (
                <div key={p.to} className="sync-plan" data-to={p.to}>
                  <button type="button" disabled={sync.fetching} onClick={() => start(p.from, p.to, true)}>
                    {t.compare.preview(p.to)} {t.compare.syncFrom(p.from)}
                  </button>
                  {previews[p.to] ? (
                    <SyncPreview
                      key={previews[p.to]}
                      id={previews[p.to]}
                      label={`${t.compare.syncTo(p.to)} ${t.compare.syncFrom(p.from)}`}
                      disabled={sync.fetching}
                      onConfirm={() => start(p.from, p.to, false)}
                    />
                  ) : null}
                </div>
              ))
            ) : (
              <p className="muted">{t.compare.syncNotAllowed}</p>
            )}
            <ApiError error={sync.error} />
          </section>
          <section className="sync-jobs">
            {jobs.map((id) => (
              <JobProgress key={id} id={id} onDone={() => refetch({ requestPolicy: "network-only" })} />
            ))}
          </section>
          {maySync(user) ? (
            <AnonymizePanel
              uid={uid}
              sources={c.sources.filter((s) => s.present && s.status === "OK").map((s) => s.source.id)}
              destinations={(result.data?.sources ?? []).filter((s) => s.roles.includes("RESEARCH")).map((s) => s.id)}
            />
          ) : null}
          {maySync(user) && result.data?.study?.modalities.includes("RTSTRUCT") ? (
            <RtStructPanel
              uid={uid}
              sources={c.sources.filter((s) => s.present && s.status === "OK").map((s) => s.source.id)}
            />
          ) : null}
        </>
      ) : null}
    </main>
  );
}

/** A dry run's progress, then what it would copy and the button that syncs for real. */
function SyncPreview(props: { id: string; label: string; disabled: boolean; onConfirm: () => void }) {
  const [done, setDone] = useState(false);
  const [job] = useQuery({ query: JobResultQuery, variables: { id: props.id }, pause: !done, requestPolicy: "network-only" });
  const current = job.data?.job?.id === props.id ? job.data.job : null; // never a stale answer
  const summary = previewText(current?.result);
  return (
    <div className="sync-preview">
      <JobProgress id={props.id} onDone={() => setDone(true)} />
      {summary ? <p className="preview-summary" role="status">{summary}</p> : null}
      {current?.error ? <p className="error" role="alert">{current.error}</p> : null}
      <button type="button" disabled={props.disabled || !summary} onClick={props.onConfirm}>
        {props.label}
      </button>
    </div>
  );
}
