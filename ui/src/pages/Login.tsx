import { useState, type FormEvent } from "react";
import { useMutation } from "urql";
import { graphql } from "../gql";
import { t } from "../i18n";
import { navigate, useLocation } from "../router";
import { nextPath, type StoredSession } from "../session";

const LoginMutation = graphql(`
  mutation Login($username: String!, $password: String!) {
    login(username: $username, password: $password) {
      token
      expiresAt
      user { id username roles }
    }
  }
`);

/** Sign in with a local user; then back to where the user was. */
export function LoginPage({ onLogin }: { onLogin: (s: StoredSession) => void }) {
  const { search } = useLocation();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [failed, setFailed] = useState(false);
  const [result, login] = useMutation(LoginMutation);

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
        <button type="submit" disabled={result.fetching}>
          {t.login.submit}
        </button>
      </form>
    </main>
  );
}
