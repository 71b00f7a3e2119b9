/** The login session, kept in sessionStorage (one tab's life; gone when the tab closes). */
export interface SessionUser {
  id: string;
  username: string;
  roles: string[];
}

export interface StoredSession {
  token: string;
  expiresAt: string;
  user: SessionUser;
}

const KEY = "pacs-gateway.session";

export function loadSession(): StoredSession | null {
  try {
    const raw = window.sessionStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as StoredSession) : null;
  } catch {
    return null;
  }
}

export function saveSession(session: StoredSession | null): void {
  if (session) window.sessionStorage.setItem(KEY, JSON.stringify(session));
  else window.sessionStorage.removeItem(KEY);
}

/** Whether the user may see patient identity (admins and radiologists). */
export function seesIdentity(user: SessionUser | undefined): boolean {
  return !!user && (user.roles.includes("ADMIN") || user.roles.includes("RADIOLOGIST"));
}

/** Whether the user may start a sync between clinical archives. */
export function maySync(user: SessionUser | undefined): boolean {
  return seesIdentity(user);
}

export function isAdmin(user: SessionUser | undefined): boolean {
  return !!user && user.roles.includes("ADMIN");
}

/** Whether an UNAUTHENTICATED answer to a request sent with `sentWith` ends the stored
 * session: only if it was sent with that session's token. An answer to a request of an
 * earlier client (no token, or a session since replaced) arriving after a sign-in must
 * not sign the new session out. */
export function endsSession(sentWith: string | null, stored: StoredSession | null): boolean {
  return stored !== null && sentWith !== null && stored.token === sentWith;
}

/** The login page's URL that comes back to `href` afterwards. */
export function loginUrl(href: string, expired = false): string {
  const params = new URLSearchParams();
  if (href && !href.startsWith("/login")) params.set("next", href);
  if (expired) params.set("expired", "1");
  const query = params.toString();
  return query ? `/login?${query}` : "/login";
}

/** A safe same-origin path to go back to after login: one leading "/", no backslash or
 * control character (browsers read "/\\evil" and "/\t/evil" as "//evil"). */
export function nextPath(raw: string | null | undefined): string {
  if (!raw || !raw.startsWith("/") || raw.startsWith("//")) return "/";
  return /[\\\u0000-\u001f\u007f]/.test(raw) ? "/" : raw;
}

/** The sign-in through the organisation's identity provider: the gateway does the whole
 * exchange (gateway/server/oidc_login.py) and comes back to `/login` with the outcome in
 * the fragment, which is never sent to a server. */
export function oidcLoginUrl(next: string | null | undefined): string {
  return `/auth/oidc/login?${new URLSearchParams({ next: nextPath(next) })}`;
}

/** What the gateway's OIDC callback put in the login page's fragment: a token (kept as the
 * session's, like a local login's) and where to go, or an error code; null for neither. */
export type OidcAnswer = { token: string; expiresAt: string; next: string } | { error: string };

export function oidcAnswer(hash: string): OidcAnswer | null {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  const token = params.get("oidc");
  if (token) return { token, expiresAt: params.get("expires") ?? "", next: nextPath(params.get("next")) };
  const error = params.get("error");
  return error ? { error: /^[a-z_]{1,32}$/.test(error) ? error : "unknown" } : null;
}
