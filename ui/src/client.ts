import { Client, cacheExchange, fetchExchange, mapExchange, subscriptionExchange } from "urql";
import { createClient as createWsClient, type Client as WsClient } from "graphql-ws";

/**
 * The GraphQL client: urql over HTTP for queries and mutations, graphql-ws (the
 * graphql-transport-ws protocol, the only one the gateway speaks) for subscriptions. The
 * bearer token goes in the Authorization header and in connection_init; an UNAUTHENTICATED
 * answer calls `onUnauthenticated` with the token the request carried.
 */
export function wsUrl(path = "/graphql"): string {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${path}`;
}

export function makeWsClient(token: string | null): WsClient {
  return createWsClient({
    url: wsUrl(),
    lazy: true,
    connectionParams: () => (token ? { Authorization: `Bearer ${token}` } : {}),
    retryAttempts: 5,
  });
}

export function makeClient(token: string | null, onUnauthenticated: (sentWith: string | null) => void): Client {
  const ws = makeWsClient(token);
  return new Client({
    url: "/graphql",
    // POST only: a search's patient names and IDs must not end up in URLs (access logs)
    preferGetMethod: false,
    requestPolicy: "cache-and-network",
    fetchOptions: (): RequestInit => {
      const headers: Record<string, string> = {};
      if (token) headers.Authorization = `Bearer ${token}`;
      return { headers };
    },
    exchanges: [
      mapExchange({
        onError(error) {
          const codes = error.graphQLErrors.map((e) => e.extensions?.code);
          const status = (error.response as Response | undefined)?.status;
          if (codes.includes("UNAUTHENTICATED") || status === 401) onUnauthenticated(token);
        },
      }),
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || "" };
          return {
            subscribe(sink) {
              const dispose = ws.subscribe(input, sink);
              return { unsubscribe: dispose };
            },
          };
        },
      }),
    ],
  });
}
