import { useState, type FormEvent } from "react";
import { useMutation } from "urql";
import { graphql } from "../gql";
import { t } from "../i18n";
import { ApiError } from "./ApiError";
import { JobProgress } from "./JobProgress";

const AnonymizeMutation = graphql(`
  mutation AnonymizeStudy($input: AnonymizeInput!) {
    anonymizeStudy(input: $input) { id status }
  }
`);

/** The PS3.15 Annex E profile options, by their contract names (explained in en.ts). */
export const DEID_OPTIONS = [
  "CleanPixelData",
  "CleanStructuredContent",
  "CleanDescriptors",
  "RetainLongitudinalTemporalInformationFullDates",
  "RetainLongitudinalTemporalInformationModifiedDates",
  "RetainPatientCharacteristics",
  "RetainDeviceIdentity",
  "RetainUIDs",
  "RetainSafePrivate",
  "RetainInstitutionIdentity",
] as const;

/** Usernames from a comma- or space-separated list. */
export function recipientsOf(text: string): string[] {
  return text.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
}

/** De-identify a study into a research archive: destination, project, options, mapping,
 * recipients; the job's progress live. */
export function AnonymizePanel(props: { uid: string; sources: string[]; destinations: string[] }) {
  const [form, setForm] = useState({
    source: props.sources[0] ?? "",
    destination: props.destinations[0] ?? "",
    project: "",
    options: [] as string[],
    keepMapping: false,
    recipients: "",
  });
  const [state, anonymize] = useMutation(AnonymizeMutation);
  const [job, setJob] = useState<string | null>(null);
  if (!props.sources.length || !props.destinations.length) return null;

  const toggle = (name: string) =>
    setForm((f) => ({
      ...f,
      options: f.options.includes(name) ? f.options.filter((o) => o !== name) : [...f.options, name],
    }));
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const recipients = recipientsOf(form.recipients);
    const answer = await anonymize({
      input: {
        source: form.source,
        destination: form.destination,
        studyInstanceUid: props.uid,
        project: form.project || null,
        options: form.options,
        keepMapping: form.keepMapping,
        recipients: recipients.length ? recipients : null,
      },
    });
    if (answer.data) setJob(answer.data.anonymizeStudy.id);
  };

  return (
    <section className="anonymize" aria-labelledby="anonymize-title">
      <h2 id="anonymize-title">{t.anonymize.title}</h2>
      <form onSubmit={submit} className="filters">
        <label>
          {t.anonymize.source}
          <select name="anon-source" value={form.source} onChange={(e) => setForm({ ...form, source: e.target.value })}>
            {props.sources.map((s) => <option key={s} value={s}>{s}</option>)}
          </select>
        </label>
        <label>
          {t.anonymize.destination}
          <select name="anon-destination" value={form.destination}
            onChange={(e) => setForm({ ...form, destination: e.target.value })}>
            {props.destinations.map((s) => <option key={s} value={s}>{s}</option>)}
          </select>
        </label>
        <label>
          {t.anonymize.project}
          <input name="anon-project" value={form.project} maxLength={64}
            onChange={(e) => setForm({ ...form, project: e.target.value })} />
        </label>
        <label>
          {t.anonymize.recipients}
          <input name="anon-recipients" value={form.recipients}
            onChange={(e) => setForm({ ...form, recipients: e.target.value })} />
        </label>
        <fieldset className="options">
          <legend>{t.anonymize.options}</legend>
          {DEID_OPTIONS.map((name) => (
            <label key={name} className="check">
              <input type="checkbox" name={name} checked={form.options.includes(name)} onChange={() => toggle(name)} />
              <span><code>{name}</code>: {t.anonymize.explain[name]}</span>
            </label>
          ))}
          <label className="check">
            <input type="checkbox" name="keepMapping" checked={form.keepMapping}
              onChange={(e) => setForm({ ...form, keepMapping: e.target.checked })} />
            <span>{t.anonymize.keepMapping}</span>
          </label>
        </fieldset>
        <button type="submit" disabled={state.fetching}>{t.anonymize.submit(form.destination)}</button>
      </form>
      <ApiError error={state.error} />
      {job ? <JobProgress id={job} /> : null}
    </section>
  );
}
