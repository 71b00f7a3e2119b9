import { useEffect, useMemo, useRef, useState, type DragEvent, type FormEvent } from "react";
import { useQuery } from "urql";
import { ApiError, type ApiErrorView } from "../components/ApiError";
import { ProgressBar } from "../components/Badges";
import { JobProgress } from "../components/JobProgress";
import { RequestState } from "../components/SourceResults";
import { graphql } from "../gql";
import type { ImportRightsQuery as ImportRightsQueryData } from "../gql/graphql";
import { t } from "../i18n";
import { droppedFiles, formatBytes, importDestinations, isSingleZip, type Picked } from "../importing";
import { Link } from "../router";

export const ImportRightsQuery = graphql(`
  query ImportRights {
    me { id roles sources groups { id roles sources } }
    sources { id name kind roles }
  }
`);

const ImportJobQuery = graphql(`
  query ImportJob($id: ID!) {
    job(id: $id) { id status result error }
  }
`);

export interface ImportResult {
  stored: number;
  alreadyPresent: number;
  refused: number;
  failed: number;
  duplicates: number;
  refusedFiles: { file: string; reason: string }[];
  refusedFilesOmitted: number;
}

/** The counts and refused files of an IMPORT job's result (missing numbers as 0). */
export function importResult(raw: unknown): ImportResult | null {
  if (!raw || typeof raw !== "object") return null;
  const r = raw as Record<string, unknown>;
  const n = (k: string) => (typeof r[k] === "number" ? (r[k] as number) : 0);
  const files = Array.isArray(r.refusedFiles) ? r.refusedFiles : [];
  return {
    stored: n("stored"),
    alreadyPresent: n("alreadyPresent"),
    refused: n("refused"),
    failed: n("failed"),
    duplicates: n("duplicates"),
    refusedFiles: files
      .filter((f): f is Record<string, unknown> => !!f && typeof f === "object")
      .map((f) => ({ file: String(f.file ?? ""), reason: String(f.reason ?? "") })),
    refusedFilesOmitted: n("refusedFilesOmitted"),
  };
}

function fromInput(list: FileList | null): Picked[] {
  return Array.from(list ?? []).map((file) => ({ file, path: file.webkitRelativePath || file.name }));
}

type Upload =
  | { state: "idle" }
  | { state: "uploading"; loaded: number; total: number }
  | { state: "error"; error: ApiErrorView }
  | { state: "job"; jobId: string };

/** An upload's error answer (`{"code", "error"}`) as an API error with its code. */
export function uploadError(status: number, body: string): ApiErrorView {
  let code = "";
  let message = "";
  try {
    const parsed: unknown = JSON.parse(body);
    if (parsed && typeof parsed === "object") {
      const p = parsed as Record<string, unknown>;
      code = typeof p.code === "string" ? p.code : "";
      message = typeof p.error === "string" ? p.error : "";
    }
  } catch {
    // not JSON: the status says enough
  }
  if (status === 413) message = message ? `${t.importing.tooLarge} (${message})` : t.importing.tooLarge;
  if (!message) message = t.importing.failed(status);
  if (!code) return { message };
  return { message, graphQLErrors: [{ message, extensions: { code } }] };
}

/** POST /import?to=…: one ZIP as a ZIP body, other files as a multipart form. */
function send(
  to: string,
  files: Picked[],
  token: string,
  onProgress: (loaded: number, total: number) => void,
): Promise<{ jobId: string } | { error: ApiErrorView }> {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/import?to=${encodeURIComponent(to)}`);
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : 0);
    xhr.onerror = () => resolve({ error: { message: t.importing.network } });
    xhr.onload = () => {
      if (xhr.status === 202) {
        try {
          const answer = JSON.parse(xhr.responseText) as { jobId?: unknown };
          if (typeof answer.jobId === "string") return resolve({ jobId: answer.jobId });
        } catch {
          // fall through: an answer without a job id
        }
      }
      resolve({ error: uploadError(xhr.status, xhr.responseText) });
    };
    if (isSingleZip(files.map((p) => p.file))) {
      xhr.setRequestHeader("Content-Type", "application/zip");
      xhr.send(files[0].file);
    } else {
      const form = new FormData();
      for (const p of files) form.append("files", p.file, p.path);
      xhr.send(form);
    }
  });
}

/** The archives the signed-in user may import into (none until the rights are known). */
export function useImportDestinations(data: ImportRightsQueryData | undefined) {
  return useMemo(() => (data?.me ? importDestinations(data.me, data.sources) : []), [data]);
}

/** Import DICOM files, folders and ZIPs into an archive: drop or choose, upload with
 * progress, follow the IMPORT job live, then its counts and refused files. */
export function ImportPage({ token }: { token: string }) {
  const [rights] = useQuery({ query: ImportRightsQuery });
  const destinations = useImportDestinations(rights.data);
  const [to, setTo] = useState("");
  const [picked, setPicked] = useState<Picked[]>([]);
  const [reading, setReading] = useState(false);
  const [over, setOver] = useState(false);
  const [upload, setUpload] = useState<Upload>({ state: "idle" });
  const [ended, setEnded] = useState<string | null>(null);
  const filesInput = useRef<HTMLInputElement>(null);
  const folderInput = useRef<HTMLInputElement>(null);
  const jobId = upload.state === "job" ? upload.jobId : "";
  const [job] = useQuery({
    query: ImportJobQuery,
    variables: { id: jobId },
    pause: !jobId || !ended,
    requestPolicy: "network-only",
  });

  useEffect(() => {
    if (!to && destinations.length) setTo(destinations[0].id);
  }, [to, destinations]);
  useEffect(() => {
    // the folder picker: a non-standard attribute React does not pass through
    folderInput.current?.setAttribute("webkitdirectory", "");
  }, [rights.data]);

  const busy = upload.state === "uploading" || (upload.state === "job" && !ended);
  const add = (more: Picked[]) => {
    if (!more.length) return;
    setUpload({ state: "idle" });
    setEnded(null);
    setPicked((p) => [...p, ...more]);
  };
  const clear = () => {
    setPicked([]);
    setUpload({ state: "idle" });
    setEnded(null);
    if (filesInput.current) filesInput.current.value = "";
    if (folderInput.current) folderInput.current.value = "";
  };
  const onDrop = async (e: DragEvent<HTMLDivElement>) => {
    e.preventDefault();
    setOver(false);
    if (busy) return;
    const pending = droppedFiles(e.dataTransfer);
    setReading(true);
    try {
      add(await pending);
    } finally {
      setReading(false);
    }
  };
  const total = picked.reduce((sum, p) => sum + p.file.size, 0);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!to || !picked.length) return;
    setEnded(null);
    setUpload({ state: "uploading", loaded: 0, total });
    const answer = await send(to, picked, token, (loaded, all) =>
      setUpload({ state: "uploading", loaded, total: all || total }),
    );
    if ("jobId" in answer) {
      setUpload({ state: "job", jobId: answer.jobId });
      setPicked([]);
      if (filesInput.current) filesInput.current.value = "";
      if (folderInput.current) folderInput.current.value = "";
    } else setUpload({ state: "error", error: answer.error });
  };

  // the query keeps the previous job's answer until this one's arrives: never show that
  const finished = job.data?.job?.id === jobId ? job.data.job : null;
  const outcome = finished && ended ? importResult(finished.result) : null;

  return (
    <main>
      <h1>{t.importing.title}</h1>
      <p className="muted">{t.importing.intro}</p>
      <RequestState fetching={rights.fetching && !rights.data} />
      <ApiError error={rights.error} />
      {rights.data && !destinations.length ? <p>{t.importing.noDestination}</p> : null}
      {destinations.length ? (
        <form className="import-form" onSubmit={submit}>
          <label>
            {t.importing.destination}
            <select name="to" value={to} onChange={(e) => setTo(e.target.value)} disabled={busy}>
              {destinations.map((s) => (
                <option key={s.id} value={s.id}>
                  {s.name} ({s.id}){s.roles.includes("RESEARCH") ? `, ${t.importing.research}` : ""}
                </option>
              ))}
            </select>
          </label>
          <div
            className={`drop-zone${over ? " over" : ""}`}
            role="group"
            aria-label={t.importing.dropZone}
            data-testid="drop-zone"
            onDragEnter={(e) => { e.preventDefault(); setOver(true); }}
            onDragOver={(e) => { e.preventDefault(); e.dataTransfer.dropEffect = "copy"; }}
            onDragLeave={() => setOver(false)}
            onDrop={onDrop}
          >
            <p>{t.importing.dropHere}</p>
            <div className="pickers">
              <label>
                {t.importing.chooseFiles}
                <input ref={filesInput} type="file" name="files" multiple disabled={busy}
                  onChange={(e) => add(fromInput(e.target.files))} />
              </label>
              <label>
                {t.importing.chooseFolder}
                <input ref={folderInput} type="file" name="folder" disabled={busy}
                  onChange={(e) => add(fromInput(e.target.files))} />
              </label>
            </div>
            {reading ? <p className="muted" aria-live="polite">{t.importing.reading}</p> : null}
          </div>
          {picked.length ? (
            <>
              <p className="selection" role="status" data-files={picked.length} data-bytes={total}>
                {t.importing.selected(picked.length, formatBytes(total))}{" "}
                {isSingleZip(picked.map((p) => p.file)) ? t.importing.asZip : t.importing.asForm}
              </p>
              <p className="muted">{t.importing.sizeBound}</p>
              <div className="table-wrap" tabIndex={0} role="region" aria-label={t.importing.chooseFiles}>
                <table className="picked">
                  <thead>
                    <tr>
                      <th scope="col">{t.importing.colFile}</th>
                      <th scope="col">{t.importing.colSize}</th>
                    </tr>
                  </thead>
                  <tbody>
                    {picked.map((p, i) => (
                      <tr key={`${p.path}-${i}`} data-file={p.path}>
                        <td>{p.path}</td>
                        <td>{formatBytes(p.file.size)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
              <div className="actions">
                <button type="submit" disabled={busy || !to}>{t.importing.submit(picked.length)}</button>{" "}
                <button type="button" className="link" disabled={busy} onClick={clear}>{t.importing.clear}</button>
              </div>
            </>
          ) : null}
        </form>
      ) : null}
      {upload.state === "uploading" ? (
        <div className="upload-progress" aria-live="polite">
          <span>{t.importing.uploading(upload.total ? Math.round((100 * upload.loaded) / upload.total) : 0)}</span>
          <ProgressBar progress={upload.total ? upload.loaded / upload.total : 0} label={t.importing.uploadProgress} />
        </div>
      ) : null}
      {upload.state === "error" ? <ApiError error={upload.error} /> : null}
      {upload.state === "job" ? (
        <section className="import-job" aria-labelledby="import-job-title">
          <h2 id="import-job-title">{t.importing.jobTitle}</h2>
          {!ended ? <p className="muted" role="status">{t.importing.uploaded}</p> : null}
          <JobProgress key={upload.jobId} id={upload.jobId} onDone={setEnded} />
          <p><Link href={`/jobs/${encodeURIComponent(upload.jobId)}`}>{t.importing.jobLink}</Link></p>
          <ApiError error={job.error} />
          {ended && ended !== "SUCCEEDED" ? (
            <p className="error" role="alert">{finished?.error ? `${t.importing.jobFailed} ${finished.error}` : t.importing.jobFailed}</p>
          ) : null}
          {outcome ? <ImportOutcome result={outcome} /> : null}
          {ended ? <button type="button" onClick={clear}>{t.importing.again}</button> : null}
        </section>
      ) : null}
    </main>
  );
}

function ImportOutcome({ result }: { result: ImportResult }) {
  return (
    <section className="import-result" aria-labelledby="import-result-title">
      <h3 id="import-result-title">{t.importing.result}</h3>
      <dl className="facts">
        <dt>{t.importing.stored}</dt><dd data-count="stored">{result.stored}</dd>
        <dt>{t.importing.alreadyPresent}</dt><dd data-count="alreadyPresent">{result.alreadyPresent}</dd>
        <dt>{t.importing.refused}</dt><dd data-count="refused">{result.refused}</dd>
        {result.failed ? <><dt>{t.importing.failedCount}</dt><dd data-count="failed">{result.failed}</dd></> : null}
        {result.duplicates ? <><dt>{t.importing.duplicates}</dt><dd data-count="duplicates">{result.duplicates}</dd></> : null}
      </dl>
      {result.refusedFiles.length ? (
        <>
          <h4>{t.importing.refusedFiles}</h4>
          <div className="table-wrap" tabIndex={0} role="region" aria-label={t.importing.refusedFiles}>
            <table className="refused">
              <thead>
                <tr>
                  <th scope="col">{t.importing.colFile}</th>
                  <th scope="col">{t.importing.reason}</th>
                </tr>
              </thead>
              <tbody>
                {result.refusedFiles.map((f, i) => (
                  <tr key={i} data-file={f.file}>
                    <td>{f.file}</td>
                    <td>{f.reason}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {result.refusedFilesOmitted ? <p className="muted">{t.importing.omitted(result.refusedFilesOmitted)}</p> : null}
        </>
      ) : null}
    </section>
  );
}
