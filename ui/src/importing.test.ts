import { describe, expect, it } from "vitest";
import { droppedFiles, effectiveRights, formatBytes, importDestinations, isSingleZip, walk } from "./importing";

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

/** A dropped file or folder as Chromium's entries API gives it; a folder answers
 * `readEntries` in batches of at most `batch` (Chromium: 100), then an empty one. */
function fileEntry(name: string): FileSystemEntry {
  const file = new File(["x"], name);
  return { isFile: true, isDirectory: false, name, file: (ok: (f: File) => void) => ok(file) } as unknown as FileSystemEntry;
}
function folderEntry(name: string, children: FileSystemEntry[], batch = 2): FileSystemEntry {
  return {
    isFile: false,
    isDirectory: true,
    name,
    createReader: () => {
      let at = 0;
      return {
        readEntries: (ok: (e: FileSystemEntry[]) => void) => {
          const next = children.slice(at, at + batch);
          at += next.length;
          setTimeout(() => ok(next), 0);
        },
      };
    },
  } as unknown as FileSystemEntry;
}
function transfer(items: { entry: FileSystemEntry | null; file?: File }[], files: File[] = []): DataTransfer {
  return {
    items: items.map(({ entry, file }) => ({
      kind: "file",
      webkitGetAsEntry: () => entry,
      getAsFile: () => file ?? null,
    })),
    files,
  } as unknown as DataTransfer;
}

describe("a drop is walked to every file, with its folder path", () => {
  it("walks nested folders read in several batches", async () => {
    const study = folderEntry("study", [
      fileEntry("a.dcm"),
      fileEntry("b.dcm"),
      fileEntry("c.dcm"),
      folderEntry("series2", [fileEntry("d.dcm"), folderEntry("empty", [])]),
      fileEntry("DICOMDIR"),
    ]);
    const paths = (await walk(study)).map((p) => p.path);
    expect(paths).toEqual(["study/a.dcm", "study/b.dcm", "study/c.dcm", "study/series2/d.dcm", "study/DICOMDIR"]);
  });

  it("takes folders and loose files of one drop together", async () => {
    const loose = new File(["y"], "loose.dcm");
    const picked = await droppedFiles(
      transfer([{ entry: folderEntry("f", [fileEntry("1.dcm")]) }, { entry: null, file: loose }]),
    );
    expect(picked.map((p) => p.path).sort()).toEqual(["f/1.dcm", "loose.dcm"]);
  });

  it("falls back to the files list when the browser gives no items", async () => {
    const only = new File(["z"], "only.zip");
    const picked = await droppedFiles({ items: [], files: [only] } as unknown as DataTransfer);
    expect(picked).toEqual([{ file: only, path: "only.zip" }]);
  });
});
