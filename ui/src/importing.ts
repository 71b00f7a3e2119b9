/** Who may import where, as the gateway decides it (gateway/auth/policy.py `check_submit`
 * for IMPORT, gateway/jobs/specs/importing.py, gateway/auth/service.py `principal_of`):
 * an archive with role STORE or RESEARCH, not XNAT; admins and radiologists into any such
 * archive, everyone else into research archives only; and never an archive a source limit
 * (the user's own united with their groups', no limit if one of them has none) excludes. */

export interface ImportSource {
  id: string;
  name: string;
  kind: string;
  roles: string[];
}

export interface ImportUser {
  roles: string[];
  sources?: string[] | null;
  groups: { roles: string[]; sources?: string[] | null }[];
}

/** The caller's effective roles and source limit (null: every source). */
export function effectiveRights(user: ImportUser): { roles: Set<string>; sources: Set<string> | null } {
  const roles = new Set(user.roles);
  const limits: (string[] | null | undefined)[] = [user.sources];
  for (const g of user.groups) {
    g.roles.forEach((r) => roles.add(r));
    limits.push(g.sources);
  }
  const sources = limits.every((l) => l != null) ? new Set(limits.flatMap((l) => l ?? [])) : null;
  return { roles, sources };
}

/** The archives `user` may import into, in configuration order. */
export function importDestinations<S extends ImportSource>(user: ImportUser, sources: S[]): S[] {
  const { roles, sources: limit } = effectiveRights(user);
  const anyArchive = roles.has("ADMIN") || roles.has("RADIOLOGIST");
  return sources.filter((s) => {
    if (s.kind === "XNAT") return false;
    const research = s.roles.includes("RESEARCH");
    if (!research && !s.roles.includes("STORE")) return false;
    if (limit && !limit.has(s.id)) return false;
    return anyArchive || research;
  });
}

/** How an upload is sent: one ZIP as a ZIP body, anything else as a multipart form. */
export function isSingleZip(files: { name: string; type: string }[]): boolean {
  if (files.length !== 1) return false;
  const f = files[0];
  return f.type === "application/zip" || f.type === "application/x-zip-compressed" || /\.zip$/i.test(f.name);
}

/** A byte count for people ("1.5 MB"). */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** One file to send, with the path it had in a dropped or chosen folder. */
export interface Picked {
  file: File;
  path: string;
}

/** Every file under a dropped entry (folders walked; readEntries answers in batches). */
export async function walk(entry: FileSystemEntry, prefix = ""): Promise<Picked[]> {
  if (entry.isFile) {
    const file = await new Promise<File>((ok, ko) => (entry as FileSystemFileEntry).file(ok, ko));
    return [{ file, path: prefix + file.name }];
  }
  if (!entry.isDirectory) return [];
  const reader = (entry as FileSystemDirectoryEntry).createReader();
  const children: FileSystemEntry[] = [];
  for (;;) {
    const batch = await new Promise<FileSystemEntry[]>((ok, ko) => reader.readEntries(ok, ko));
    if (!batch.length) break;
    children.push(...batch);
  }
  const out: Picked[] = [];
  for (const child of children) out.push(...(await walk(child, `${prefix}${entry.name}/`)));
  return out;
}

/** The files of a drop: entries taken while the event lasts, then walked. */
export async function droppedFiles(transfer: DataTransfer): Promise<Picked[]> {
  const entries: FileSystemEntry[] = [];
  const loose: File[] = [];
  for (const item of Array.from(transfer.items ?? [])) {
    if (item.kind !== "file") continue;
    const entry = typeof item.webkitGetAsEntry === "function" ? item.webkitGetAsEntry() : null;
    if (entry) entries.push(entry);
    else {
      const file = item.getAsFile();
      if (file) loose.push(file);
    }
  }
  if (!entries.length && !loose.length) loose.push(...Array.from(transfer.files ?? []));
  const out: Picked[] = loose.map((file) => ({ file, path: file.name }));
  for (const entry of entries) out.push(...(await walk(entry)));
  return out;
}
