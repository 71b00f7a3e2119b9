import { useState, type FormEvent } from "react";
import { useMutation, useQuery } from "urql";
import { RequestState } from "../components/SourceResults";
import { graphql } from "../gql";
import type { Role } from "../gql/graphql";
import { t } from "../i18n";

const UsersQuery = graphql(`
  query UsersList {
    users { id username roles active lastLoginAt }
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
    </main>
  );
}
