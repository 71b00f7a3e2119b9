import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { GraphiQL } from "graphiql";
import "graphiql/style.css";
import { useMemo } from "react";
import { makeWsClient } from "../client";

/** The example operations the gateway puts in the page it serves at /graphql. */
function examples(): string | undefined {
  const node = document.getElementById("graphiql-examples");
  if (!node?.textContent) return undefined;
  try {
    const value: unknown = JSON.parse(node.textContent);
    return typeof value === "string" ? value : undefined;
  } catch {
    return undefined;
  }
}

/** GraphiQL, bundled (no CDN), sending the dashboard's session token (lazy-loaded chunk). */
export default function GraphiQLPage({ token }: { token: string }) {
  const fetcher = useMemo(
    () =>
      createGraphiQLFetcher({
        url: "/graphql",
        headers: { Authorization: `Bearer ${token}` },
        wsClient: makeWsClient(token),
      }),
    [token],
  );
  return (
    <div className="graphiql-host">
      <GraphiQL fetcher={fetcher} defaultQuery={examples()} />
    </div>
  );
}
