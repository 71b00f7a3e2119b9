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

/** The login page's URL that comes back to `href` afterwards. */
export function loginUrl(href: string, expired = false): string {
  const params = new URLSearchParams();
  if (href && !href.startsWith("/login")) params.set("next", href);
  if (expired) params.set("expired", "1");
  const query = params.toString();
  return query ? `/login?${query}` : "/login";
}

/** A safe same-origin path to go back to after login. */
export function nextPath(raw: string | null): string {
  return raw && raw.startsWith("/") && !raw.startsWith("//") ? raw : "/";
}
