import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { withEvent } from "../pages/Job";
import { applyEvent } from "../pages/Jobs";
import { HISTORY, pushSample, Sparkline } from "../pages/Sources";
import { searchUrl, filterOf } from "../pages/Search";
import { previewText, syncPlans } from "../pages/Study";
import { loginUrl, nextPath } from "../session";
import { DEID_OPTIONS, recipientsOf } from "./Anonymize";
import { t } from "../i18n";
import { ArchiveBadges, Identity, ProgressBar, StatusChip } from "./Badges";
import { Pager } from "./Pager";
import css from "../styles.css?raw";

afterEach(cleanup);

describe("archive badges", () => {
  it("marks each archive held or missing, missing in red", () => {
    const { container } = render(
      <ArchiveBadges archives={["orthanc", "dcm4chee", "legacy"]} presentIn={["dcm4chee"]} missingFrom={["orthanc", "legacy"]} />,
    );
    const badges = [...container.querySelectorAll<HTMLElement>(".badge")];
    expect(badges.map((b) => [b.dataset.archive, b.dataset.state])).toEqual([
      ["orthanc", "missing"],
      ["dcm4chee", "held"],
      ["legacy", "missing"],
    ]);
    expect(badges[0].className).toContain("badge-missing");
    expect(badges[1].className).toContain("badge-held");
    expect(badges[0].getAttribute("aria-label")).toBe("orthanc: missing");
    // the stylesheet paints a missing badge red
    const bad = /--bad:\s*#([0-9a-f]{6})/i.exec(css)![1];
    const [r, g, b] = [0, 2, 4].map((i) => parseInt(bad.slice(i, i + 2), 16));
    expect(r).toBeGreaterThan(150);
    expect(g).toBeLessThan(80);
    expect(b).toBeLessThan(80);
    expect(css).toMatch(/\.badge-missing\s*{[^}]*background:\s*var\(--bad\)/);
  });
});

describe("an archive that did not answer", () => {
  it("is unknown (grey), never missing (red)", () => {
    const { container } = render(
      <ArchiveBadges archives={["orthanc", "dcm4chee", "legacy"]} presentIn={["orthanc"]} missingFrom={["dcm4chee"]} />,
    );
    const states = [...container.querySelectorAll<HTMLElement>(".badge")].map((b) => b.dataset.state);
    expect(states).toEqual(["held", "missing", "unknown"]);
    expect(container.querySelector('[data-archive="legacy"]')!.className).not.toContain("badge-missing");
  });
});

describe("status chips", () => {
  it("shows OK, ERROR and TIMEOUT with their tone and latency", () => {
    render(
      <>
        <StatusChip status="OK" latencyMs={12.4} />
        <StatusChip status="TIMEOUT" latencyMs={5000} />
        <StatusChip status="ERROR" />
      </>,
    );
    expect(screen.getByText("OK").closest(".chip")!.className).toContain("chip-ok");
    expect(screen.getByText("timeout").closest(".chip")!.className).toContain("chip-bad");
    expect(screen.getByText("error").closest(".chip")!.className).toContain("chip-bad");
    expect(screen.getByText(/12 ms/)).toBeTruthy();
    expect(screen.getByText(/5000 ms/)).toBeTruthy();
  });
});

describe("identity", () => {
  it("renders the hidden marker, never a value, for a field not served", () => {
    const { container } = render(<Identity value={undefined} />);
    expect(container.querySelector("[data-hidden=true]")!.textContent).toBe("hidden");
    cleanup();
    render(<Identity value="Müller Jürgen" />);
    expect(screen.getByText("Müller Jürgen")).toBeTruthy();
  });
});

describe("pagination", () => {
  it("offers the next page only when the server has one, with its cursor", () => {
    const onNext = vi.fn();
    const onFirst = vi.fn();
    const { rerender } = render(
      <Pager page={1} hasNextPage endCursor="c1" onNext={onNext} onFirst={onFirst} />,
    );
    const first = screen.getByRole("button", { name: "First page" }) as HTMLButtonElement;
    const next = screen.getByRole("button", { name: "Next page" }) as HTMLButtonElement;
    expect(first.disabled).toBe(true);
    fireEvent.click(next);
    expect(onNext).toHaveBeenCalledWith("c1");
    rerender(<Pager page={2} hasNextPage={false} endCursor="c2" onNext={onNext} onFirst={onFirst} />);
    expect(next.disabled).toBe(true);
    expect(first.disabled).toBe(false);
    fireEvent.click(first);
    expect(onFirst).toHaveBeenCalled();
    expect(screen.getByText("Page 2")).toBeTruthy();
  });

  it("keeps the filter and cursor in the URL", () => {
    const url = searchUrl({ name: "Müller*", patientId: "", birthDate: "19990219" }, "cur", 3);
    const f = filterOf(new URL(url, "http://x").searchParams);
    expect(f).toEqual({ name: "Müller*", patientId: "", birthDate: "19990219", after: "cur", page: 3, size: 25 });
    const big = filterOf(new URL(searchUrl({ name: "", patientId: "", birthDate: "", size: 500 }), "http://x").searchParams);
    expect(big.size).toBe(500);
    expect(filterOf(new URLSearchParams("size=100000")).size).toBe(25);
    expect(searchUrl({ name: "", patientId: "", birthDate: "" })).toBe("/");
  });
});

describe("progress and jobs", () => {
  it("shows progress as a percentage", () => {
    render(<ProgressBar progress={0.5} label="job" />);
    expect(screen.getByRole("progressbar").getAttribute("aria-valuenow")).toBe("50");
  });

  it("applies live events: updates a known job, adds a new one on top", () => {
    const rows = [{ id: "a", status: "RUNNING", progress: 0.1 }];
    const updated = applyEvent(rows, { jobId: "a", status: "SUCCEEDED", progress: 1 });
    expect(updated[0]).toMatchObject({ id: "a", status: "SUCCEEDED", progress: 1 });
    const added = applyEvent(updated, { jobId: "b", status: "QUEUED", progress: 0 });
    expect(added.map((r) => r.id)).toEqual(["b", "a"]);
    // a status filter keeps other jobs out, but still updates the ones listed
    expect(applyEvent(rows, { jobId: "c", status: "QUEUED", progress: 0 }, "FAILED")).toEqual(rows);
  });

  it("adds a live event to a job's timeline once", () => {
    const e = { at: "2026-12-02T00:00:00", status: "RUNNING", progress: 0.5, phase: "copy" };
    const once = withEvent([], e);
    expect(withEvent(once, { ...e })).toHaveLength(1);
    expect(withEvent(once, { ...e, progress: 1, status: "SUCCEEDED" })).toHaveLength(2);
  });
});

describe("sources", () => {
  it("keeps a bounded latency history and marks the checks an archive was down", () => {
    let h: (number | null)[] = [];
    for (let i = 0; i < HISTORY + 5; i++) h = pushSample(h, i % 10 === 0 ? null : i);
    expect(h).toHaveLength(HISTORY);
    const { container } = render(<Sparkline samples={h} label="x" />);
    const svg = container.querySelector("svg")!;
    expect(svg.getAttribute("data-down")).toBe(String(h.filter((s) => s == null).length));
    expect(container.querySelectorAll("rect.down-mark")).toHaveLength(Number(svg.getAttribute("data-down")));
  });
});

describe("sync plans and login redirects", () => {
  const row = (id: string, present: boolean, instances: number | null, status = "OK", roles = ["QUERY", "STORE"]) => ({
    source: { id, roles },
    present,
    instances,
    status,
  });

  it("copies from the fullest archive to the ones short of it", () => {
    const plans = syncPlans([row("orthanc", false, null), row("dcm4chee", true, 14), row("legacy", true, 12)], []);
    expect(plans).toEqual([
      { to: "orthanc", from: "dcm4chee" },
      { to: "legacy", from: "dcm4chee" },
    ]);
    expect(syncPlans([row("a", true, 3), row("b", true, 3)], [])).toEqual([]);
    expect(syncPlans([row("a", true, 3), row("b", false, null, "ERROR")], [])).toEqual([]);
  });

  it("says what a dry run would copy", () => {
    expect(previewText({ instancesToTransfer: 14, conflicts: 0 })).toBe("Dry run: would copy 14 instance(s).");
    expect(previewText({ instancesToTransfer: 2, conflicts: 1 })).toBe("Dry run: would copy 2 instance(s), 1 conflict(s).");
    expect(previewText(null)).toBeNull();
  });

  it("comes back to the page after login, never to another site", () => {
    expect(loginUrl("/studies/1.2?x=1", true)).toBe("/login?next=%2Fstudies%2F1.2%3Fx%3D1&expired=1");
    expect(nextPath("/jobs")).toBe("/jobs");
    expect(nextPath("//evil.example/")).toBe("/");
    expect(nextPath("https://evil.example/")).toBe("/");
    expect(nextPath(null)).toBe("/");
  });
});

describe("de-identification form", () => {
  it("explains every PS3.15 option it offers and reads the recipients", () => {
    for (const name of DEID_OPTIONS) expect(t.anonymize.explain[name]).toBeTruthy();
    expect(recipientsOf(" alice, bob;carol  dave ")).toEqual(["alice", "bob", "carol", "dave"]);
    expect(recipientsOf("  ")).toEqual([]);
  });
});

describe("languages", () => {
  it("takes the stored choice, else the browser's, else English", async () => {
    const { chooseLanguage } = await import("../i18n");
    expect(chooseLanguage("fr", "en-US")).toBe("fr");
    expect(chooseLanguage(null, "fr-CA")).toBe("fr");
    expect(chooseLanguage(null, "de-DE")).toBe("en");
    expect(chooseLanguage("xx", undefined)).toBe("en");
  });
});

describe("audit log", () => {
  it("names a known user's actor by username, keeps any other actor as it is", async () => {
    const { actorName } = await import("../pages/Admin");
    const users = [{ id: "u1", username: "admin" }];
    expect(actorName("user:u1", users)).toBe("admin");
    expect(actorName("user:u2", users)).toBe("user:u2");
    expect(actorName("token:abc", users)).toBe("token:abc");
    expect(actorName(null, users)).toBeNull();
  });
});
