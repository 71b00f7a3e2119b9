import { Fragment, useState, type FormEvent } from "react";
import { useMutation, useQuery } from "urql";
import { ApiError } from "../components/ApiError";
import { Pager } from "../components/Pager";
import { RequestState } from "../components/SourceResults";
import { graphql } from "../gql";
import type { Role } from "../gql/graphql";
import { t } from "../i18n";

const UsersQuery = graphql(`
  query UsersList {
    users { id username roles sources active lastLoginAt }
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

const SourceIdsQuery = graphql(`
  query AdminSourceIds {
    sources { id }
  }
`);

const GroupsQuery = graphql(`
  query GroupsList {
    groups { id name roles sources members { id } }
  }
`);

const CreateGroup = graphql(`
  mutation CreateGroup($input: GroupInput!) {
    createGroup(input: $input) { id name roles sources }
  }
`);

const UpdateGroup = graphql(`
  mutation UpdateGroup($id: ID!, $input: GroupInput!) {
    updateGroup(id: $id, input: $input) { id name roles sources }
  }
`);

const DeleteGroup = graphql(`
  mutation DeleteGroup($id: ID!) {
    deleteGroup(id: $id)
  }
`);

const SetUserSources = graphql(`
  mutation SetUserSources($id: ID!, $sources: [ID!]) {
    updateUser(id: $id, patch: { sources: $sources }) { id sources }
  }
`);

const ROLES: Role[] = ["ADMIN", "RADIOLOGIST", "RESEARCHER"];

const CreateUser = graphql(`
  mutation CreateUser($input: UserInput!) {
    createUser(input: $input) { id username }
  }
`);

/** Administration: the users (each one's source limit set or lifted), a form to create one, the groups. */
export function AdminPage() {
  const [result, refetch] = useQuery({ query: UsersQuery });
  const [created, create] = useMutation(CreateUser);
  const [form, setForm] = useState({ username: "", password: "", role: "RADIOLOGIST" as Role });
  const [done, setDone] = useState<string | null>(null);
  const [sourceIds] = useQuery({ query: SourceIdsQuery });
  const sources = sourceIds.data?.sources.map((s) => s.id) ?? [];
  const [editing, setEditing] = useState<{ id: string; sources: string[] | null } | null>(null);
  const [saved, save] = useMutation(SetUserSources);
  const [savedName, setSavedName] = useState<string | null>(null);

  const saveSources = async (id: string, username: string) => {
    if (!editing) return;
    const answer = await save({ id, sources: editing.sources });
    if (answer.data) {
      setEditing(null);
      setSavedName(username);
      refetch({ requestPolicy: "network-only" });
    }
  };

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
              <th scope="col">{t.admin.colSources}</th>
              <th scope="col">{t.admin.colActions}</th>
            </tr>
          </thead>
          <tbody>
            {result.data?.users.map((u) => (
              <Fragment key={u.id}>
                <tr data-user={u.username}>
                  <td>{u.username}</td>
                  <td>{u.roles.join(", ")}</td>
                  <td>{u.active ? "✓" : "✗"}</td>
                  <td className="muted">{u.lastLoginAt ? new Date(u.lastLoginAt).toLocaleString() : t.common.none}</td>
                  <td className="user-sources">{limitSummary(u.sources)}</td>
                  <td>
                    <button type="button" aria-expanded={editing?.id === u.id}
                      onClick={() => { setSavedName(null); setEditing(editing?.id === u.id ? null : { id: u.id, sources: u.sources ?? null }); }}>
                      {t.admin.editSources(u.username)}
                    </button>
                  </td>
                </tr>
                {editing?.id === u.id ? (
                  <tr className="edit-row" data-edit-user={u.username}>
                    <td colSpan={6}>
                      <form onSubmit={(e) => { e.preventDefault(); saveSources(u.id, u.username); }}>
                        <SourceLimitField legend={t.admin.editSources(u.username)} sources={sources}
                          value={editing.sources} onChange={(v) => setEditing({ id: u.id, sources: v })} />
                        <button type="submit" disabled={saved.fetching}>{t.common.save}</button>{" "}
                        <button type="button" className="link" onClick={() => setEditing(null)}>{t.common.cancel}</button>
                      </form>
                    </td>
                  </tr>
                ) : null}
              </Fragment>
            ))}
          </tbody>
        </table>
      </div>
      <ApiError error={saved.error} />
      {savedName ? <p className="ok" role="status">{t.admin.sourcesSaved(savedName)}</p> : null}
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
      <ApiError error={created.error} />
      {done ? <p className="ok" role="status">{t.admin.created(done)}</p> : null}
      <Groups sources={sources} />
      <AuditLog users={result.data?.users ?? []} />
    </main>
  );
}

/** A source limit as shown in a table: "all" without one, else its archives. */
function limitSummary(limit: readonly string[] | null | undefined): string {
  return limit == null ? t.sourceLimit.all : t.sourceLimit.summary([...limit]);
}

/** A source limit: none (null: every archive the roles allow) or a list of archives. */
export function SourceLimitField({ legend, sources, value, onChange }: {
  legend: string;
  sources: string[];
  value: string[] | null;
  onChange: (value: string[] | null) => void;
}) {
  // an archive in the limit that the gateway no longer knows stays listed (and removable)
  const known = [...sources, ...(value ?? []).filter((s) => !sources.includes(s))];
  return (
    <fieldset className="source-limit">
      <legend>{legend}</legend>
      <label>
        <input type="checkbox" name="no-source-limit" checked={value === null}
          onChange={(e) => onChange(e.target.checked ? null : [])} />
        {t.sourceLimit.none}
      </label>
      {value !== null ? (
        <span className="source-choices">
          <span className="muted">{t.sourceLimit.only}</span>
          {known.map((id) => (
            <label key={id}>
              <input type="checkbox" name="limit-source" value={id} checked={value.includes(id)}
                onChange={(e) => onChange(e.target.checked ? [...value, id] : value.filter((s) => s !== id))} />
              {id}
            </label>
          ))}
        </span>
      ) : null}
    </fieldset>
  );
}

/** Roles as checkboxes in a fieldset. */
function RolesField({ legend, value, onChange }: { legend: string; value: Role[]; onChange: (value: Role[]) => void }) {
  return (
    <fieldset className="roles">
      <legend>{legend}</legend>
      {ROLES.map((r) => (
        <label key={r}>
          <input type="checkbox" name="group-role" value={r} checked={value.includes(r)}
            onChange={(e) => onChange(e.target.checked ? [...value, r] : value.filter((x) => x !== r))} />
          {r}
        </label>
      ))}
    </fieldset>
  );
}

interface GroupDraft {
  name: string;
  roles: Role[];
  sources: string[] | null;
}

/** Groups: list, create, edit (roles and source limit), delete after a confirmation. */
export function Groups({ sources }: { sources: string[] }) {
  const [result, refetch] = useQuery({ query: GroupsQuery });
  const [created, create] = useMutation(CreateGroup);
  const [updated, update] = useMutation(UpdateGroup);
  const [deleted, remove] = useMutation(DeleteGroup);
  const empty: GroupDraft = { name: "", roles: [], sources: null };
  const [form, setForm] = useState<GroupDraft>(empty);
  const [editing, setEditing] = useState<({ id: string } & GroupDraft) | null>(null);
  const [confirming, setConfirming] = useState<string | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const reload = () => refetch({ requestPolicy: "network-only" });

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setStatus(null);
    const answer = await create({ input: { name: form.name, roles: form.roles, sources: form.sources } });
    if (answer.data) {
      setStatus(t.groups.created(answer.data.createGroup.name));
      setForm(empty);
      reload();
    }
  };

  const saveEdit = async (e: FormEvent) => {
    e.preventDefault();
    if (!editing) return;
    setStatus(null);
    const { id, name, roles, sources: limit } = editing;
    const answer = await update({ id, input: { name, roles, sources: limit } });
    if (answer.data) {
      setEditing(null);
      setStatus(t.groups.saved(name));
      reload();
    }
  };

  const doDelete = async (id: string, name: string) => {
    const answer = await remove({ id });
    setConfirming(null);
    if (answer.data) {
      setStatus(t.groups.deleted(name));
      reload();
    }
  };

  const groups = result.data?.groups;
  return (
    <section aria-labelledby="groups-title" className="groups">
      <h2 id="groups-title">{t.groups.title}</h2>
      <RequestState fetching={result.fetching && !groups} />
      <ApiError error={result.error} />
      {groups && !groups.length ? <p className="muted">{t.groups.empty}</p> : null}
      {groups && groups.length ? (
        <div className="table-wrap" tabIndex={0} role="region" aria-labelledby="groups-title">
          <table className="groups">
            <thead>
              <tr>
                <th scope="col">{t.groups.colName}</th>
                <th scope="col">{t.groups.colRoles}</th>
                <th scope="col">{t.groups.colSources}</th>
                <th scope="col">{t.groups.colMembers}</th>
                <th scope="col">{t.groups.colActions}</th>
              </tr>
            </thead>
            <tbody>
              {groups.map((g) => (
                <Fragment key={g.id}>
                  <tr data-group={g.name}>
                    <td>{g.name}</td>
                    <td className="group-roles">{g.roles.join(", ")}</td>
                    <td className="group-sources">{limitSummary(g.sources)}</td>
                    <td>{g.members.length}</td>
                    <td>
                      {confirming === g.id ? (
                        <span className="confirm">
                          <span>{t.groups.confirmDelete(g.name)}</span>{" "}
                          <button type="button" disabled={deleted.fetching} onClick={() => doDelete(g.id, g.name)}>
                            {t.groups.confirm}
                          </button>{" "}
                          <button type="button" className="link" onClick={() => setConfirming(null)}>{t.common.cancel}</button>
                        </span>
                      ) : (
                        <>
                          <button type="button" aria-expanded={editing?.id === g.id}
                            onClick={() => {
                              setStatus(null);
                              setEditing(editing?.id === g.id ? null
                                : { id: g.id, name: g.name, roles: [...g.roles], sources: g.sources ? [...g.sources] : null });
                            }}>
                            {t.groups.edit(g.name)}
                          </button>{" "}
                          <button type="button" onClick={() => { setStatus(null); setConfirming(g.id); }}>
                            {t.groups.delete(g.name)}
                          </button>
                        </>
                      )}
                    </td>
                  </tr>
                  {editing?.id === g.id ? (
                    <tr className="edit-row" data-edit-group={g.name}>
                      <td colSpan={5}>
                        <form aria-label={t.groups.editing(g.name)} onSubmit={saveEdit}>
                          <RolesField legend={t.groups.roles} value={editing.roles}
                            onChange={(roles) => setEditing({ ...editing, roles })} />
                          <SourceLimitField legend={t.sourceLimit.legend} sources={sources} value={editing.sources}
                            onChange={(v) => setEditing({ ...editing, sources: v })} />
                          <button type="submit" disabled={updated.fetching}>{t.common.save}</button>{" "}
                          <button type="button" className="link" onClick={() => setEditing(null)}>{t.common.cancel}</button>
                        </form>
                      </td>
                    </tr>
                  ) : null}
                </Fragment>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <ApiError error={updated.error} />
      <ApiError error={deleted.error} />
      {status ? <p className="ok" role="status">{status}</p> : null}
      <h3>{t.groups.create}</h3>
      <form className="group-form" aria-label={t.groups.create} onSubmit={submit}>
        <label>
          {t.groups.name}
          <input name="group-name" value={form.name} required maxLength={128}
            onChange={(e) => setForm({ ...form, name: e.target.value })} />
        </label>
        <RolesField legend={t.groups.roles} value={form.roles} onChange={(roles) => setForm({ ...form, roles })} />
        <SourceLimitField legend={t.sourceLimit.legend} sources={sources} value={form.sources}
          onChange={(v) => setForm({ ...form, sources: v })} />
        <button type="submit" disabled={created.fetching}>{t.groups.create}</button>
      </form>
      <ApiError error={created.error} />
    </section>
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
