import json, time, uuid
from dataclasses import replace
from starlette.testclient import TestClient
from gateway.server.app import create_app
from gateway.server import ratelimit

def test_probe(settings, monkeypatch):
    charged = []
    orig = ratelimit.TimeShares.end
    def end(self, key, seconds, contended):
        charged.append(seconds); return orig(self, key, seconds, contended)
    monkeypatch.setattr(ratelimit.TimeShares, "end", end)
    app = create_app(replace(settings, rate_per_s=0, max_queued_jobs_per_user=0))
    q = "mutation($i: SyncInput!) { syncStudies(input: $i) { id } }"
    with TestClient(app) as c:
        for _ in range(6):
            uids = [f"1.2.826.0.1.3680043.8.498.{uuid.uuid4().int}"[:60] for _ in range(10000)]
            body = json.dumps({"query": q, "variables": {"i": {"from": "orthanc", "to": "dcm4chee", "dryRun": True, "studyInstanceUids": uids}}}).encode()
            t = time.perf_counter(); cpu = time.process_time()
            r = c.post("/graphql", content=body, headers={"content-type": "application/json"})
            print("PROBE", r.status_code, round(time.perf_counter() - t, 3), "cpu", round(time.process_time() - cpu, 3), "charged", round(charged[-1], 3))
