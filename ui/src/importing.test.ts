import { describe, expect, it } from "vitest";
import { effectiveRights, formatBytes, importDestinations, isSingleZip } from "./importing";

const SOURCES = [
  { id: "orthanc", name: "Orthanc", kind: "ORTHANC", roles: ["QUERY", "RETRIEVE", "STORE"] },
  { id: "pacs", name: "Query only", kind: "DICOMWEB", roles: ["QUERY", "RETRIEVE"] },
  { id: "xnat", name: "XNAT", kind: "XNAT", roles: ["STORE", "RESEARCH"] },
  { id: "research", name: "Research", kind: "ORTHANC", roles: ["RESEARCH"] },
];
const ids = (user: Parameters<typeof importDestinations>[0]) => importDestinations(user, SOURCES).map((s) => s.id);

describe("importDestinations mirrors the gateway's policy", () => {
  it("lets radiologists and admins import into every archive that stores, XNAT aside", () => {
    expect(ids({ roles: ["RADIOLOGIST"], groups: [] })).toEqual(["orthanc", "research"]);
    expect(ids({ roles: ["ADMIN"], groups: [] })).toEqual(["orthanc", "research"]);
  });
  it("lets researchers import into research archives only", () => {
    expect(ids({ roles: ["RESEARCHER"], groups: [] })).toEqual(["research"]);
  });
  it("counts a group's roles", () => {
    expect(ids({ roles: ["RESEARCHER"], groups: [{ roles: ["RADIOLOGIST"], sources: null }] })).toEqual(["orthanc", "research"]);
  });
  it("applies the source limit, united with the groups', none if one has none", () => {
    expect(ids({ roles: ["RESEARCHER"], sources: ["orthanc"], groups: [] })).toEqual([]);
    expect(ids({ roles: ["ADMIN"], sources: ["orthanc"], groups: [{ roles: [], sources: ["research"] }] })).toEqual(["orthanc", "research"]);
    expect(effectiveRights({ roles: [], sources: ["orthanc"], groups: [{ roles: [], sources: null }] }).sources).toBeNull();
  });
});

describe("upload helpers", () => {
  it("sends one ZIP as a ZIP body, anything else as a form", () => {
    expect(isSingleZip([{ name: "a.zip", type: "" }])).toBe(true);
    expect(isSingleZip([{ name: "a", type: "application/zip" }])).toBe(true);
    expect(isSingleZip([{ name: "a.zip", type: "" }, { name: "b.zip", type: "" }])).toBe(false);
    expect(isSingleZip([{ name: "a.dcm", type: "application/dicom" }])).toBe(false);
  });
  it("formats sizes", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KB");
    expect(formatBytes(200 * 1024 * 1024)).toBe("200 MB");
  });
});
