import { useLayoutEffect, useRef, useState, type FormEvent } from "react";
import { useQuery } from "urql";
import { ArchiveBadges, Hidden, Identity } from "../components/Badges";
import { Pager } from "../components/Pager";
import { RequestState, SourceResults } from "../components/SourceResults";
import { graphql } from "../gql";
import { t } from "../i18n";
import { Link, navigate, useLocation } from "../router";
import { seesIdentity, type SessionUser } from "../session";

export const SearchPatientsQuery = graphql(`
  query SearchPatients($filter: PatientFilter, $first: Int!, $after: String, $identity: Boolean!) {
    patients(filter: $filter, first: $first, after: $after) {
      totalCount
      totalCountEstimated
      pageInfo { hasNextPage endCursor }
      sourceResults { source { id } status latencyMs count error }
      edges {
        cursor
        node {
          patientId @include(if: $identity)
          name @include(if: $identity)
          birthDate @include(if: $identity)
          presentIn { id }
          missingFrom { id }
          conflicts @include(if: $identity) { field }
          studies @skip(if: $identity) { studyInstanceUid studyDate description }
        }
      }
    }
  }
`);

export const PAGE_SIZES = [25, 100, 500];

/** The filter as the URL holds it (shareable, survives a reload). */
export function filterOf(search: URLSearchParams) {
  return {
    name: search.get("name") ?? "",
    patientId: search.get("id") ?? "",
    birthDate: search.get("birth") ?? "",
    after: search.get("after"),
    page: Number(search.get("page") ?? "1") || 1,
    size: PAGE_SIZES.includes(Number(search.get("size"))) ? Number(search.get("size")) : PAGE_SIZES[0],
  };
}

export function searchUrl(
  f: { name: string; patientId: string; birthDate: string; size?: number },
  after?: string,
  page = 1,
) {
  const p = new URLSearchParams();
  if (f.name) p.set("name", f.name);
  if (f.patientId) p.set("id", f.patientId);
  if (f.birthDate) p.set("birth", f.birthDate);
  if (f.size && f.size !== PAGE_SIZES[0]) p.set("size", String(f.size));
  if (after) {
    p.set("after", after);
    p.set("page", String(page));
  }
  const q = p.toString();
  return q ? `/?${q}` : "/";
}

/** Federated patient search: one row per patient, a badge per archive. */
export function SearchPage({ user }: { user: SessionUser }) {
  const { search } = useLocation();
  const current = filterOf(search);
  const identity = seesIdentity(user);
  const [form, setForm] = useState({
    name: current.name,
    patientId: current.patientId,
    birthDate: current.birthDate,
    size: current.size,
  });
  const filter = identity
    ? {
        name: current.name || null,
        patientId: current.patientId || null,
        birthDate: current.birthDate || null,
      }
    : {};
  const [result] = useQuery({
    query: SearchPatientsQuery,
    variables: { filter, first: current.size, after: current.after, identity },
  });
  const page = result.data?.patients;
  useRenderTiming(page);
  const archives = page?.sourceResults.map((r) => r.source.id) ?? [];

  const submit = (e: FormEvent) => {
    e.preventDefault();
    navigate(searchUrl(form));
  };

  return (
    <main>
      <h1>{t.search.title}</h1>
      <form className="filters" onSubmit={submit} role="search">
        <label>
          {t.search.name}
          <input name="name" value={form.name} disabled={!identity}
            onChange={(e) => setForm({ ...form, name: e.target.value })} />
        </label>
        <label>
          {t.search.patientId}
          <input name="patientId" value={form.patientId} disabled={!identity}
            onChange={(e) => setForm({ ...form, patientId: e.target.value })} />
        </label>
        <label>
          {t.search.birthDate}
          <input name="birthDate" value={form.birthDate} disabled={!identity} inputMode="numeric"
            pattern="[0-9]{8}" onChange={(e) => setForm({ ...form, birthDate: e.target.value })} />
        </label>
        <label>
          {t.search.pageSize}
          <select name="size" value={form.size} onChange={(e) => setForm({ ...form, size: Number(e.target.value) })}>
            {PAGE_SIZES.map((n) => (
              <option key={n} value={n}>{n}</option>
            ))}
          </select>
        </label>
        <button type="submit">{t.search.submit}</button>
        {!identity ? <p className="muted">{t.search.identityFiltersHidden}</p> : null}
      </form>
      {page ? <SourceResults results={page.sourceResults} /> : null}
      <RequestState fetching={result.fetching && !page} error={result.error} />
      {page ? (
        <>
          <p className="muted" aria-live="polite">{t.search.results(page.totalCount, page.totalCountEstimated)}</p>
          <div className="table-wrap" tabIndex={0}>
            <table className="results">
              <thead>
                <tr>
                  <th scope="col">{t.search.colName}</th>
                  <th scope="col">{t.search.colId}</th>
                  <th scope="col">{t.search.colBirth}</th>
                  <th scope="col">{t.search.colArchives}</th>
                  <th scope="col">{t.search.colConflicts}</th>
                </tr>
              </thead>
              <tbody>
                {page.edges.map(({ cursor, node }) => (
                  <tr key={cursor} data-row="patient" className={node.missingFrom.length ? "row-partial" : ""}>
                    <td>
                      {node.patientId !== undefined ? (
                        <Link href={`/patients/${encodeURIComponent(node.patientId)}`}>
                          <Identity value={node.name?.replace(/\^/g, " ")} />
                        </Link>
                      ) : (
                        <Hidden />
                      )}
                    </td>
                    <td><Identity value={node.patientId} /></td>
                    <td><Identity value={node.birthDate} /></td>
                    <td>
                      <ArchiveBadges
                        archives={archives}
                        presentIn={node.presentIn.map((s) => s.id)}
                        missingFrom={node.missingFrom.map((s) => s.id)}
                      />
                      {node.studies?.map((s) => (
                        <Link key={s.studyInstanceUid} className="study-link"
                          href={`/studies/${encodeURIComponent(s.studyInstanceUid)}`}>
                          {s.studyDate ?? ""} {s.description ?? t.search.open}
                        </Link>
                      ))}
                    </td>
                    <td>
                      {node.conflicts === undefined ? (
                        <Hidden />
                      ) : node.conflicts.length ? (
                        <span className="conflict" data-conflict="true">
                          ⚠ {t.search.conflict(node.conflicts.map((c) => c.field).join(", "))}
                        </span>
                      ) : (
                        <span className="muted">{t.search.noConflict}</span>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {page.edges.length === 0 ? <p>{t.search.empty}</p> : null}
          <Pager
            page={current.page}
            hasNextPage={page.pageInfo.hasNextPage}
            endCursor={page.pageInfo.endCursor}
            onNext={(cursor) => navigate(searchUrl(current, cursor, current.page + 1))}
            onFirst={() => navigate(searchUrl(current))}
          />
        </>
      ) : null}
    </main>
  );
}

/**
 * Performance marks for the search results: `search:data` when a new page of data reaches
 * the component, `search:render` (a measure) once its rows are in the DOM and painted.
 */
function useRenderTiming(page: unknown): void {
  const last = useRef<unknown>(undefined);
  if (page && page !== last.current) {
    last.current = page;
    performance.clearMarks("search:data");
    performance.mark("search:data");
  }
  useLayoutEffect(() => {
    if (!page) return;
    const frame = requestAnimationFrame(() => {
      performance.clearMeasures("search:render");
      performance.measure("search:render", "search:data");
    });
    return () => cancelAnimationFrame(frame);
  }, [page]);
}
