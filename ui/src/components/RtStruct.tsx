import { lazy, Suspense, useState } from "react";
import { useMutation, useQuery } from "urql";
import { graphql } from "../gql";
import { t } from "../i18n";
import { ApiError } from "./ApiError";
import { loadSession } from "../session";
import { JobProgress } from "./JobProgress";

const ResultsQuery = graphql(`
  query RtStructResults($uid: String!) {
    rtStructResults(studyInstanceUid: $uid) {
      jobId
      seriesInstanceUid
      processingSeconds
      summaryUrl
      warnings
      rois {
        number name volumeCc surfaceCm2 centroidMm sliceCount
        meanValue minValue maxValue planimetricVolumeCc volumeMismatch
        maskUrl meshUrl fullGridMaskUrl
      }
    }
  }
`);

const ProcessMutation = graphql(`
  mutation ProcessRtStruct($input: RtStructInput!) {
    processRtStruct(input: $input) { id status }
  }
`);

const MeshView = lazy(() => import("./MeshView"));

const fmt = (v: number | null | undefined, digits = 1) => (v == null ? t.common.none : v.toFixed(digits));

/** Download a job output (`/files/...` needs the bearer token: fetched, then saved). */
export async function download(url: string, name: string): Promise<void> {
  const token = loadSession()?.token;
  const response = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  if (!response.ok) throw new Error(`${response.status}`);
  const href = URL.createObjectURL(await response.blob());
  const a = document.createElement("a");
  a.href = href;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(href), 10_000);
}

function Download({ url, name, label }: { url?: string | null; name: string; label: string }) {
  if (!url) return null;
  return (
    <button type="button" className="link" onClick={() => void download(url, name)}>
      {label}
    </button>
  );
}

/** RT-STRUCT: process the study's structure set, then its ROI table and downloads. */
export function RtStructPanel({ uid, sources }: { uid: string; sources: string[] }) {
  const [results, refetch] = useQuery({ query: ResultsQuery, variables: { uid } });
  const [state, process] = useMutation(ProcessMutation);
  const [job, setJob] = useState<string | null>(null);
  const start = async () => {
    const answer = await process({ input: { source: sources[0], studyInstanceUid: uid } });
    if (answer.data) setJob(answer.data.processRtStruct.id);
  };
  return (
    <section className="rtstruct" aria-labelledby="rtstruct-title">
      <h2 id="rtstruct-title">{t.rtstruct.title}</h2>
      {sources.length ? (
        <button type="button" onClick={start} disabled={state.fetching}>
          {t.rtstruct.process(sources[0])}
        </button>
      ) : null}
      <ApiError error={state.error} />
      {job ? <JobProgress id={job} onDone={() => refetch({ requestPolicy: "network-only" })} /> : null}
      <ApiError error={results.error} />
      {results.data?.rtStructResults.length === 0 ? <p className="muted">{t.rtstruct.none}</p> : null}
      {results.data?.rtStructResults.map((r) => (
        <div key={r.jobId} className="rt-result" data-job={r.jobId}>
          <p className="muted">
            {t.rtstruct.summary(r.rois.length, r.processingSeconds)}{" "}
            <Download url={r.summaryUrl} name={`rtstruct-${r.jobId}.json`} label={t.rtstruct.json} />
          </p>
          {r.warnings.map((w) => <p key={w} className="notice">{w}</p>)}
          <Show3d rois={r.rois} />
          <div className="table-wrap" tabIndex={0}>
            <table className="rois">
              <thead>
                <tr>
                  <th scope="col">{t.rtstruct.roi}</th>
                  <th scope="col">{t.rtstruct.volume}</th>
                  <th scope="col">{t.rtstruct.surface}</th>
                  <th scope="col">{t.rtstruct.centroid}</th>
                  <th scope="col">{t.rtstruct.hu}</th>
                  <th scope="col">{t.rtstruct.files}</th>
                </tr>
              </thead>
              <tbody>
                {r.rois.map((roi) => (
                  <tr key={roi.number} data-roi={roi.name}>
                    <th scope="row">{roi.number}. {roi.name}</th>
                    <td className={roi.volumeMismatch ? "bad" : ""}>
                      {fmt(roi.volumeCc, 2)}
                      {roi.volumeMismatch ? ` ⚠ ${t.rtstruct.mismatch(fmt(roi.planimetricVolumeCc, 2))}` : ""}
                    </td>
                    <td>{fmt(roi.surfaceCm2, 2)}</td>
                    <td>{roi.centroidMm.map((c) => c.toFixed(1)).join(", ")}</td>
                    <td>{fmt(roi.meanValue)} [{fmt(roi.minValue, 0)}, {fmt(roi.maxValue, 0)}]</td>
                    <td>
                      <Download url={roi.maskUrl} name={`${roi.name}.nii.gz`} label={t.rtstruct.nifti} />{" "}
                      {roi.fullGridMaskUrl && roi.fullGridMaskUrl !== roi.maskUrl ? (
                        <>
                          <Download
                            url={roi.fullGridMaskUrl}
                            name={`${roi.name}.full.nii.gz`}
                            label={t.rtstruct.niftiFull}
                          />{" "}
                        </>
                      ) : null}
                      <Download url={roi.meshUrl} name={`${roi.name}.stl`} label={t.rtstruct.stl} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </div>
      ))}
    </section>
  );
}

/** The 3D view, loaded (three.js) only when asked for. */
function Show3d({ rois }: { rois: { number: number; name: string; meshUrl?: string | null }[] }) {
  const [open, setOpen] = useState(false);
  if (!rois.some((r) => r.meshUrl)) return null;
  return (
    <div className="show-3d">
      <button type="button" onClick={() => setOpen(!open)} aria-expanded={open}>
        {open ? t.rtstruct.hide3d : t.rtstruct.show3d}
      </button>
      {open ? (
        <Suspense fallback={<p className="muted">{t.common.loading}</p>}>
          <MeshView rois={rois} />
        </Suspense>
      ) : null}
    </div>
  );
}
