import { lazy, Suspense, useCallback, useEffect, useMemo, useState } from "react";
import { Provider, useMutation, useQuery } from "urql";
import { makeClient } from "./client";
import { graphql } from "./gql";
import { LANGUAGES, lang, setLanguage, t } from "./i18n";
import { AdminPage } from "./pages/Admin";
import { ImportPage, ImportRightsQuery, useImportDestinations } from "./pages/Import";
import { JobPage } from "./pages/Job";
import { JobsPage } from "./pages/Jobs";
import { LoginPage } from "./pages/Login";
import { PatientPage } from "./pages/Patient";
import { SearchPage } from "./pages/Search";
import { SourcesPage } from "./pages/Sources";
import { StudyPage } from "./pages/Study";
import { TokensPage } from "./pages/Tokens";
import { Link, navigate, useLocation } from "./router";
import { endsSession, isAdmin, loadSession, loginUrl, saveSession, type StoredSession } from "./session";

const GraphiQLPage = lazy(() => import("./pages/GraphiQLPage"));

const LogoutMutation = graphql(`mutation Logout { logout }`);

/** The dashboard: a session, a client bound to it, and the page of the current path. */
export function App() {
  const [session, setSession] = useState<StoredSession | null>(() => loadSession());
  const { path, href } = useLocation();

  const onUnauthenticated = useCallback((sentWith: string | null) => {
    // a failed login answers UNAUTHENTICATED too, and so may a request of the client
    // before the sign-in, answered after it
    if (!endsSession(sentWith, loadSession())) return;
    saveSession(null);
    setSession(null);
    navigate(loginUrl(window.location.pathname + window.location.search, true), true);
  }, []);
  const client = useMemo(() => makeClient(session?.token ?? null, onUnauthenticated), [session, onUnauthenticated]);

  const login = (s: StoredSession) => {
    saveSession(s);
    setSession(s);
  };

  let page;
  if (path === "/login") {
    page = <LoginPage onLogin={login} />;
  } else if (!session) {
    page = <Redirect to={loginUrl(href)} />;
  } else {
    page = <Routed path={path} session={session} />;
  }
  return (
    <Provider value={client}>
      {session && path !== "/login" ? (
        <Header session={session} onLogout={() => { saveSession(null); setSession(null); navigate("/login"); }} />
      ) : null}
      {page}
    </Provider>
  );
}

function Routed({ path, session }: { path: string; session: StoredSession }) {
  const user = session.user;
  const patient = path.match(/^\/patients\/(.+)$/);
  const study = path.match(/^\/studies\/(.+)$/);
  const job = path.match(/^\/jobs\/(.+)$/);
  if (path === "/" || path === "/index.html") return <SearchPage user={user} />;
  if (patient) return <PatientPage key={patient[1]} patientId={decodeURIComponent(patient[1])} user={user} />;
  if (study) return <StudyPage key={study[1]} uid={decodeURIComponent(study[1])} user={user} />;
  if (path === "/jobs") return <JobsPage />;
  if (job) return <JobPage key={job[1]} id={decodeURIComponent(job[1])} />;
  if (path === "/sources") return <SourcesPage />;
  if (path === "/tokens") return <TokensPage />;
  if (path === "/import") return <ImportPage token={session.token} />;
  if (path === "/admin") return isAdmin(user) ? <AdminPage /> : <main><p>{t.admin.forbidden}</p></main>;
  if (path === "/graphql")
    return (
      <Suspense fallback={<p className="muted">{t.graphiql.loading}</p>}>
        <GraphiQLPage token={session.token} />
      </Suspense>
    );
  return <main><p>{t.notFound}</p></main>;
}

function Header({ session, onLogout }: { session: StoredSession; onLogout: () => void }) {
  const [, logout] = useMutation(LogoutMutation);
  // the Import link only for those the gateway lets import somewhere (pages/Import.tsx)
  const [rights] = useQuery({ query: ImportRightsQuery });
  const mayImport = useImportDestinations(rights.data).length > 0;
  const { path } = useLocation();
  const item = (href: string, label: string, external = false) => (
    <li>
      {external ? (
        <a href={href} aria-current={path === href ? "page" : undefined}>{label}</a>
      ) : (
        <Link href={href} aria-current={path === href ? "page" : undefined}>{label}</Link>
      )}
    </li>
  );
  return (
    <header className="top">
      <strong className="brand">{t.appName}</strong>
      <nav aria-label="main">
        <ul>
          {item("/", t.nav.search)}
          {item("/jobs", t.nav.jobs)}
          {item("/sources", t.nav.sources)}
          {mayImport ? item("/import", t.nav.import) : null}
          {item("/tokens", t.nav.tokens)}
          {isAdmin(session.user) ? item("/admin", t.nav.admin) : null}
          {item("/graphql", t.nav.graphiql, true)}
        </ul>
      </nav>
      <span className="who" data-user={session.user.username}>
        {t.nav.signedInAs(session.user.username, session.user.roles.join(", "))}
      </span>
      <select aria-label="Language / Langue" value={lang} onChange={(e) => setLanguage(e.target.value)}>
        {Object.entries(LANGUAGES).map(([code, l]) => (
          <option key={code} value={code}>{l.name}</option>
        ))}
      </select>
      <button type="button" onClick={async () => { await logout({}); onLogout(); }}>{t.nav.logout}</button>
    </header>
  );
}

function Redirect({ to }: { to: string }) {
  useEffect(() => navigate(to, true), [to]);
  return null;
}
