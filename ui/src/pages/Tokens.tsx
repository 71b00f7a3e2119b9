import { useState, type FormEvent } from "react";
import { useMutation, useQuery } from "urql";
import { ApiError } from "../components/ApiError";
import { RequestState } from "../components/SourceResults";
import { graphql } from "../gql";
import { t } from "../i18n";

const TokensQuery = graphql(`
  query MyApiTokens {
    apiTokens { id name prefix createdAt expiresAt lastUsedAt }
  }
`);

const CreateToken = graphql(`
  mutation CreateApiToken($name: String!, $expiresInDays: Int) {
    createApiToken(name: $name, expiresInDays: $expiresInDays) {
      token
      apiToken { id name prefix createdAt expiresAt lastUsedAt }
    }
  }
`);

const RevokeToken = graphql(`
  mutation RevokeApiToken($id: ID!) {
    revokeApiToken(id: $id)
  }
`);

function when(value: string | null | undefined, otherwise: string): string {
  return value ? new Date(value).toLocaleString() : otherwise;
}

/** The user's own API tokens: list, create (the secret shown once), revoke. */
export function TokensPage() {
  const [result, refetch] = useQuery({ query: TokensQuery });
  const [created, create] = useMutation(CreateToken);
  const [revoked, revoke] = useMutation(RevokeToken);
  const [form, setForm] = useState({ name: "", days: "90" });
  const [secret, setSecret] = useState<{ name: string; token: string } | null>(null);
  const [copy, setCopy] = useState<"" | "ok" | "failed">("");
  const [confirming, setConfirming] = useState<string | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const reload = () => refetch({ requestPolicy: "network-only" });

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setStatus(null);
    const days = form.days.trim();
    const answer = await create({ name: form.name, expiresInDays: days ? Number(days) : null });
    if (answer.data) {
      const made = answer.data.createApiToken;
      setSecret({ name: made.apiToken.name, token: made.token });
      setCopy("");
      setForm({ ...form, name: "" });
      reload();
    }
  };

  const copySecret = async () => {
    if (!secret) return;
    try {
      await navigator.clipboard.writeText(secret.token);
      setCopy("ok");
    } catch {
      setCopy("failed");
    }
  };

  const doRevoke = async (id: string, name: string) => {
    const answer = await revoke({ id });
    setConfirming(null);
    if (answer.data) {
      setStatus(t.tokens.revoked(name));
      reload();
    }
  };

  const tokens = result.data?.apiTokens;
  return (
    <main>
      <h1>{t.tokens.title}</h1>
      <p className="muted">{t.tokens.intro}</p>
      {secret ? (
        <section className="new-secret" aria-labelledby="new-secret-title">
          <h2 id="new-secret-title">{t.tokens.newToken(secret.name)}</h2>
          <p className="warning" role="alert">{t.tokens.showOnce}</p>
          <label>
            {t.tokens.secretLabel}
            <input className="secret" name="new-token" readOnly value={secret.token} size={60}
              spellCheck={false} autoComplete="off" onFocus={(e) => e.target.select()} />
          </label>
          <div className="secret-actions">
            <button type="button" onClick={copySecret}>{t.tokens.copy}</button>
            <button type="button" className="link" onClick={() => setSecret(null)}>{t.tokens.dismiss}</button>
            <span role="status" className={copy === "failed" ? "error" : "ok"}>
              {copy === "ok" ? t.tokens.copied : copy === "failed" ? t.tokens.copyFailed : ""}
            </span>
          </div>
        </section>
      ) : null}
      <RequestState fetching={result.fetching && !tokens} error={undefined} />
      <ApiError error={result.error} />
      {tokens && tokens.length === 0 ? <p className="muted">{t.tokens.empty}</p> : null}
      {tokens && tokens.length ? (
        <div className="table-wrap" tabIndex={0} role="region" aria-label={t.tokens.title}>
          <table className="tokens">
            <thead>
              <tr>
                <th scope="col">{t.tokens.colName}</th>
                <th scope="col">{t.tokens.colPrefix}</th>
                <th scope="col">{t.tokens.colCreated}</th>
                <th scope="col">{t.tokens.colExpires}</th>
                <th scope="col">{t.tokens.colLastUsed}</th>
                <th scope="col">{t.tokens.colActions}</th>
              </tr>
            </thead>
            <tbody>
              {tokens.map((k) => (
                <tr key={k.id} data-token={k.id} data-prefix={k.prefix}>
                  <td>{k.name}</td>
                  <td><code>{k.prefix}…</code></td>
                  <td>{when(k.createdAt, t.common.none)}</td>
                  <td>{when(k.expiresAt, t.tokens.never)}</td>
                  <td className="muted">{when(k.lastUsedAt, t.tokens.notUsed)}</td>
                  <td>
                    {confirming === k.id ? (
                      <span className="confirm">
                        <span>{t.tokens.confirmRevoke(k.name)}</span>{" "}
                        <button type="button" disabled={revoked.fetching} onClick={() => doRevoke(k.id, k.name)}>
                          {t.tokens.confirm}
                        </button>{" "}
                        <button type="button" className="link" onClick={() => setConfirming(null)}>{t.common.cancel}</button>
                      </span>
                    ) : (
                      <button type="button" onClick={() => { setStatus(null); setConfirming(k.id); }}>
                        {t.tokens.revoke(k.name)}
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <ApiError error={revoked.error} />
      {status ? <p className="ok" role="status">{status}</p> : null}
      <h2>{t.tokens.create}</h2>
      <form className="filters" onSubmit={submit}>
        <label>
          {t.tokens.name}
          <input name="token-name" value={form.name} required maxLength={128}
            onChange={(e) => setForm({ ...form, name: e.target.value })} />
        </label>
        <label>
          {t.tokens.expiresInDays}
          <input name="token-days" type="number" min={1} max={3650} step={1} value={form.days}
            onChange={(e) => setForm({ ...form, days: e.target.value })} />
        </label>
        <button type="submit" disabled={created.fetching}>{t.tokens.create}</button>
      </form>
      <ApiError error={created.error} />
    </main>
  );
}
