import { useState, type FormEvent } from "react";
import { useMutation, useQuery } from "urql";
import { Pager } from "../components/Pager";
import { RequestState } from "../components/SourceResults";
import { graphql } from "../gql";
import type { Role } from "../gql/graphql";
import { t } from "../i18n";

const UsersQuery = graphql(`
  query UsersList {
    users { id username roles active lastLoginAt }
  }
`);

const AuditQuery = graphql(`
  query AuditLog($filter: AuditFilter, $after: String) {
    auditEvents(filter: $filter, first: 50, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { node { id at actor action objectType objectRef outcome address } }
    }
  }
`);

const CreateUser = graphql(`
  mutation CreateUser($input: UserInput!) {
    createUser(input: $input) { id username }
  }
`);

/** Administration: the users, and a form to create one. */
export function AdminPage() {
  const [result, refetch] = useQuery({ query: UsersQuery });
  const [created, create] = useMutation(CreateUser);
  const [form, setForm] = useState({ username: "", password: "", role: "RADIOLOGIST" as Role });
  const [done, setDone] = useState<string | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const answer = await create({
      input: { username: form.username, password: form.password, roles: [form.role] },
    });
    if (answer.data) {
      setDone(answer.data.createUser.username);
      setForm({ ...form, username: "", password: "" });
      refetch({ requestPolicy: "network-only" });
    }
  };

  return (
    <main>
      <h1>{t.admin.title}</h1>
      <h2>{t.admin.users}</h2>
      <RequestState fetching={result.fetching && !result.data} error={result.error} />
      <div className="table-wrap" tabIndex={0}>
        <table className="users">
          <thead>
            <tr>
              <th scope="col">{t.admin.colUser}</th>
              <th scope="col">{t.admin.colRoles}</th>
              <th scope="col">{t.admin.colActive}</th>
              <th scope="col">{t.admin.colLastLogin}</th>
            </tr>
          </thead>
          <tbody>
            {result.data?.users.map((u) => (
              <tr key={u.id} data-user={u.username}>
                <td>{u.username}</td>
                <td>{u.roles.join(", ")}</td>
                <td>{u.active ? "✓" : "✗"}</td>
                <td className="muted">{u.lastLoginAt ? new Date(u.lastLoginAt).toLocaleString() : t.common.none}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <h2>{t.admin.create}</h2>
      <form className="filters" onSubmit={submit}>
        <label>
          {t.admin.username}
          <input name="new-username" value={form.username} required
            onChange={(e) => setForm({ ...form, username: e.target.value })} />
        </label>
        <label>
          {t.admin.password}
          <input name="new-password" type="password" autoComplete="new-password" value={form.password}
            minLength={12} required onChange={(e) => setForm({ ...form, password: e.target.value })} />
        </label>
        <label>
          {t.admin.role}
          <select name="new-role" value={form.role} onChange={(e) => setForm({ ...form, role: e.target.value as Role })}>
            <option value="ADMIN">ADMIN</option>
            <option value="RADIOLOGIST">RADIOLOGIST</option>
            <option value="RESEARCHER">RESEARCHER</option>
          </select>
        </label>
        <button type="submit" disabled={created.fetching}>{t.admin.create}</button>
      </form>
      {created.error ? <p className="error" role="alert">{t.common.error(created.error.message)}</p> : null}
      {done ? <p className="ok" role="status">{t.admin.created(done)}</p> : null}
      <AuditLog users={result.data?.users ?? []} />
    </main>
  );
}

/** `user:<id>` as its username when the user is known. */
export function actorName(actor: string | null | undefined, users: { id: string; username: string }[]): string | null {
  if (!actor) return null;
  const user = actor.startsWith("user:") ? users.find((u) => `user:${u.id}` === actor) : undefined;
  return user ? user.username : actor;
}

/** The audit log, newest first, filtered by actor (a user) and action. */
export function AuditLog({ users }: { users: { id: string; username: string }[] }) {
  const [form, setForm] = useState({ actor: "", action: "" });
  const [filter, setFilter] = useState({ actor: "", action: "" });
  const [cursors, setCursors] = useState<string[]>([]);
  const after = cursors.at(-1) ?? null;
  const [result] = useQuery({
    query: AuditQuery,
    variables: { filter: { actor: filter.actor || null, action: filter.action || null }, after },
  });
  const page = result.data?.auditEvents;
  return (
    <section aria-labelledby="audit-title">
      <h2 id="audit-title">{t.audit.title}</h2>
      <form
        className="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setFilter(form);
          setCursors([]);
        }}
      >
        <label>
          {t.audit.actor}
          <select name="audit-actor" value={form.actor} onChange={(e) => setForm({ ...form, actor: e.target.value })}>
            <option value="">{t.jobs.all}</option>
            {users.map((u) => (
              <option key={u.id} value={`user:${u.id}`}>{u.username}</option>
            ))}
          </select>
        </label>
        <label>
          {t.audit.action}
          <input name="audit-action" value={form.action} onChange={(e) => setForm({ ...form, action: e.target.value })} />
        </label>
        <button type="submit">{t.audit.filter}</button>
      </form>
      <RequestState fetching={result.fetching && !page} error={result.error} />
      {page ? (
        <>
          <p className="muted">{t.audit.count(page.totalCount)}</p>
          <div className="table-wrap" tabIndex={0}>
            <table className="audit">
              <thead>
                <tr>
                  <th scope="col">{t.audit.at}</th>
                  <th scope="col">{t.audit.actor}</th>
                  <th scope="col">{t.audit.action}</th>
                  <th scope="col">{t.audit.object}</th>
                  <th scope="col">{t.audit.outcome}</th>
                  <th scope="col">{t.audit.address}</th>
                </tr>
              </thead>
              <tbody>
                {page.edges.map(({ node: a }) => (
                  <tr key={a.id} data-audit={a.action}>
                    <td>{new Date(a.at).toLocaleString()}</td>
                    <td title={a.actor ?? ""}>{actorName(a.actor, users) ?? t.common.none}</td>
                    <td>{a.action}</td>
                    <td><code className="uid">{[a.objectType, a.objectRef].filter(Boolean).join(" ")}</code></td>
                    <td>{a.outcome}</td>
                    <td className="muted">{a.address ?? t.common.none}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager
            page={cursors.length + 1}
            hasNextPage={page.pageInfo.hasNextPage}
            endCursor={page.pageInfo.endCursor}
            onNext={(c) => setCursors([...cursors, c])}
            onFirst={() => setCursors([])}
          />
        </>
      ) : null}
    </section>
  );
}
