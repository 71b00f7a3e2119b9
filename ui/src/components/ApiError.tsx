import { t } from "../i18n";

/** What an urql error carries that is shown: the GraphQL errors' codes and messages. */
export interface ApiErrorView {
  message: string;
  graphQLErrors?: { message: string; extensions?: Record<string, unknown> }[];
}

/** One line per GraphQL error, with its `extensions.code` ("Request failed (FORBIDDEN): …");
 * a network error (no GraphQL error) as its message. */
export function apiErrorLines(error: ApiErrorView): string[] {
  const errors = error.graphQLErrors ?? [];
  if (!errors.length) return [t.common.error(error.message)];
  return errors.map((e) => {
    const code = e.extensions?.code;
    return typeof code === "string" && code ? t.common.apiError(code, e.message) : t.common.error(e.message);
  });
}

/** An API error as an alert, or nothing. */
export function ApiError({ error }: { error?: ApiErrorView | null }) {
  if (!error) return null;
  return (
    <p className="error" role="alert" data-code={codes(error).join(" ") || undefined}>
      {apiErrorLines(error).join(" · ")}
    </p>
  );
}

function codes(error: ApiErrorView): string[] {
  return (error.graphQLErrors ?? [])
    .map((e) => e.extensions?.code)
    .filter((c): c is string => typeof c === "string");
}
