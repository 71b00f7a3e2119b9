"""Prometheus metrics of the gateway and the workers (`prometheus_client`).

`families` holds every metric object, `record` the calls the code makes (a no-op when
`[metrics] enabled = false`), `expose` the text format and the workers' own endpoint.
Labels are bounded values only: source ids and sync pairs from the configuration, job
kinds and statuses, adapter operation names, error classes and codes, GraphQL operation
names (capped). Never a UID, a name or any other patient value.
"""
