import { useQuery } from "urql";
import { ArchiveBadges, Identity } from "../components/Badges";
import { RequestState } from "../components/SourceResults";
import { graphql } from "../gql";
import { t } from "../i18n";
import { Link, viewerUrl } from "../router";
import { seesIdentity, type SessionUser } from "../session";

const PatientQuery = graphql(`
  query PatientView($patientId: String!) {
    sources { id roles }
    patient(patientId: $patientId) {
      patientId
      name
      birthDate
      sex
      presentIn { id }
      missingFrom { id }
      conflicts { field values { source { id } value } }
      studies {
        studyInstanceUid
        studyDate
        description
        modalities
        presentIn { id }
        missingFrom { id }
      }
    }
  }
`);

/** A patient's studies across the archives. */
export function PatientPage({ patientId, user }: { patientId: string; user: SessionUser }) {
  const [result] = useQuery({ query: PatientQuery, variables: { patientId }, pause: !seesIdentity(user) });
  const p = result.data?.patient;
  const archives = (result.data?.sources ?? [])
    .filter((s) => s.roles.includes("QUERY"))
    .map((s) => s.id);
  return (
    <main>
      <h1>{t.patient.title(patientId)}</h1>
      <RequestState fetching={result.fetching && !p} error={result.error} />
      {p ? (
        <>
          <dl className="facts">
            <dt>{t.search.colName}</dt>
            <dd><Identity value={p.name?.replace(/\^/g, " ")} /></dd>
            <dt>{t.search.colBirth}</dt>
            <dd><Identity value={p.birthDate} /></dd>
            <dt>{t.search.colArchives}</dt>
            <dd>
              <ArchiveBadges archives={archives} presentIn={p.presentIn.map((s) => s.id)}
                missingFrom={p.missingFrom.map((s) => s.id)} />
            </dd>
          </dl>
          {p.conflicts.length ? (
            <ConflictTable conflicts={p.conflicts} />
          ) : null}
          <h2>{t.patient.studies}</h2>
          <div className="table-wrap" tabIndex={0}>
            <table>
              <thead>
                <tr>
                  <th scope="col">{t.patient.colDate}</th>
                  <th scope="col">{t.patient.colDescription}</th>
                  <th scope="col">{t.patient.colModalities}</th>
                  <th scope="col">{t.search.colArchives}</th>
                  <th scope="col"><span className="sr-only">{t.patient.compare}</span></th>
                </tr>
              </thead>
              <tbody>
                {p.studies.map((s) => (
                  <tr key={s.studyInstanceUid} data-row="study">
                    <td>{s.studyDate ?? t.common.none}</td>
                    <td>{s.description ?? t.common.none}</td>
                    <td>{s.modalities.join(", ")}</td>
                    <td>
                      <ArchiveBadges archives={archives} presentIn={s.presentIn.map((x) => x.id)}
                        missingFrom={s.missingFrom.map((x) => x.id)} />
                    </td>
                    <td>
                      <Link href={`/studies/${encodeURIComponent(s.studyInstanceUid)}`}>{t.patient.compare}</Link> <a href={viewerUrl(s.studyInstanceUid)}>{t.patient.viewer}</a>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      ) : null}
    </main>
  );
}

/** Attribute conflicts side by side: one column per archive. */
export function ConflictTable({
  conflicts,
}: {
  conflicts: { field: string; values: { source: { id: string }; value?: string | null }[] }[];
}) {
  const archives = [...new Set(conflicts.flatMap((c) => c.values.map((v) => v.source.id)))];
  return (
    <div className="table-wrap" tabIndex={0}>
      <table className="conflicts" aria-label={t.compare.conflicts}>
        <thead>
          <tr>
            <th scope="col">{t.compare.conflicts}</th>
            {archives.map((a) => (
              <th scope="col" key={a}>{a}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {conflicts.map((c) => (
            <tr key={c.field} data-conflict={c.field}>
              <th scope="row">{c.field}</th>
              {archives.map((a) => (
                <td key={a}>{c.values.find((v) => v.source.id === a)?.value ?? t.common.none}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
