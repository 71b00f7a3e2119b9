import { useEffect, useRef, useState, type FormEvent } from "react";
import { useClient, useMutation } from "urql";
import { graphql } from "../gql";
import { t } from "../i18n";
import { navigate, useLocation } from "../router";
import { nextPath, oidcAnswer, oidcLoginUrl, type StoredSession } from "../session";

const LoginMutation = graphql(`
  mutation Login($username: String!, $password: String!) {
    login(username: $username, password: $password) {
      token
      expiresAt
      user { id username roles }
    }
  }
`);

// Who an OIDC token stands for, asked with that token (the login page has no session yet)
const OidcMeQuery = graphql(`
  query OidcMe {
    me { id username roles }
  }
`);

/** Whether the gateway offers the sign-in through the organisation's identity provider. */
function useOidcOffered(): boolean {
  const [offered, setOffered] = useState(false);
  useEffect(() => {
    let live = true;
    fetch("/auth/config", { headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : null))
      .then((body) => live && setOffered(body?.oidc === true))
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, []);
  return offered;
}

/** Sign in with a local user, or through the organisation's identity provider when the
 * gateway offers it (it comes back here with `#oidc=<token>` or `#error=<code>`); then
 * back to where the user was. */
export function LoginPage({ onLogin }: { onLogin: (s: StoredSession) => void }) {
  const { search } = useLocation();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [failed, setFailed] = useState(false);
  const [result, login] = useMutation(LoginMutation);
  const client = useClient();
  const offered = useOidcOffered();
  // read once: the fragment is dropped from the address bar (and history) at once
  const [answer] = useState(() => oidcAnswer(window.location.hash));
  const [oidcError, setOidcError] = useState(answer && "error" in answer ? answer.error : null);
  const started = useRef(false);

  useEffect(() => {
    if (!answer || started.current) return;
    started.current = true;
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
    if ("error" in answer) return;
    const headers = { Authorization: `Bearer ${answer.token}` };
    client
      .query(OidcMeQuery, {}, { fetchOptions: { headers }, requestPolicy: "network-only" })
      .toPromise()
      .then((r) => {
        const user = r.data?.me;
        if (!user) {
          setOidcError("token");
          return;
        }
        onLogin({ token: answer.token, expiresAt: answer.expiresAt, user });
        navigate(answer.next, true);
      });
  }, [answer, client, onLogin]);

  const checking = !!answer && !("error" in answer) && !oidcError;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setFailed(false);
    const answer = await login({ username, password });
    const session = answer.data?.login;
    if (!session) {
      setFailed(true);
      return;
    }
    onLogin({ token: session.token, expiresAt: session.expiresAt, user: session.user });
    navigate(nextPath(search.get("next")), true);
  };

  return (
    <main className="login">
      <form onSubmit={submit} className="card" aria-labelledby="login-title">
        <h1 id="login-title">{t.login.title}</h1>
        {search.get("expired") ? <p className="notice">{t.login.expired}</p> : null}
        <label>
          {t.login.username}
          <input
            name="username"
            autoComplete="username"
            value={username}
            onChange={(e) => setUsername(e.target.value)}
            required
            autoFocus
          />
        </label>
        <label>
          {t.login.password}
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
          />
        </label>
        {failed ? <p className="error" role="alert">{t.login.failed}</p> : null}
        <button type="submit" disabled={result.fetching || checking}>
          {t.login.submit}
        </button>
        {checking ? <p className="notice" role="status">{t.login.oidcChecking}</p> : null}
        {oidcError ? (
          <p className="error" role="alert">
            {t.login.oidcErrors[oidcError] ?? t.login.oidcErrors.unknown}
          </p>
        ) : null}
        {offered ? (
          <>
            <p className="muted" style={{ textAlign: "center", margin: 0 }}>{t.login.or}</p>
            <a className="button" style={{ textAlign: "center" }} href={oidcLoginUrl(search.get("next"))}>
              {t.login.oidc}
            </a>
          </>
        ) : null}
      </form>
    </main>
  );
}
