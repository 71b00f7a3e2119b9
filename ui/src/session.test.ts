import { describe, expect, it } from "vitest";
import { endsSession, nextPath, oidcAnswer, oidcLoginUrl } from "./session";

describe("nextPath keeps the user on the gateway", () => {
  it("keeps a local path with its query", () => {
    expect(nextPath("/studies/1.2.3?tab=series")).toBe("/studies/1.2.3?tab=series");
  });
  it("refuses other origins and what browsers read as one", () => {
    for (const bad of ["//evil.example", "https://evil.example/", "/\\evil.example", "/\t/evil.example", "evil", "", null, undefined]) {
      expect(nextPath(bad)).toBe("/");
    }
  });
});

describe("the sign-in through the organisation", () => {
  it("starts at the gateway with a safe next", () => {
    expect(oidcLoginUrl("/jobs?status=RUNNING")).toBe("/auth/oidc/login?next=%2Fjobs%3Fstatus%3DRUNNING");
    expect(oidcLoginUrl("//evil.example")).toBe("/auth/oidc/login?next=%2F");
    expect(oidcLoginUrl(null)).toBe("/auth/oidc/login?next=%2F");
  });
  it("reads the token, its expiry and where to go from the fragment", () => {
    const hash = "#oidc=aaa.bbb.ccc&expires=2026-12-02T12%3A00%3A00%2B00%3A00&next=%2Fjobs%3Fstatus%3DRUNNING";
    expect(oidcAnswer(hash)).toEqual({ token: "aaa.bbb.ccc", expiresAt: "2026-12-02T12:00:00+00:00", next: "/jobs?status=RUNNING" });
    expect(oidcAnswer("#oidc=t&next=%2F%2Fevil.example")).toEqual({ token: "t", expiresAt: "", next: "/" });
  });
  it("reads an error code, and nothing from an empty fragment", () => {
    expect(oidcAnswer("#error=state")).toEqual({ error: "state" });
    expect(oidcAnswer("#error=%3Cscript%3E")).toEqual({ error: "unknown" });
    expect(oidcAnswer("")).toBeNull();
    expect(oidcAnswer("#section")).toBeNull();
  });
});

describe("an UNAUTHENTICATED answer", () => {
  const session = { token: "new", expiresAt: "", user: { id: "1", username: "u", roles: [] } };
  it("ends the session whose token the request carried", () => {
    expect(endsSession("new", session)).toBe(true);
  });
  it("leaves a newer session alone, and does nothing without one", () => {
    expect(endsSession(null, session)).toBe(false);
    expect(endsSession("old", session)).toBe(false);
    expect(endsSession(null, null)).toBe(false);
    expect(endsSession("new", null)).toBe(false);
  });
});
