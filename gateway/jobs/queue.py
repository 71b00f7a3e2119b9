"""The Redis side of jobs: arq ids, enqueueing, worker leases and cancel flags.

A job's arq id is derived from its DB row: ``{job id}:{attempts}``. Enqueueing
the same row twice is a no-op (arq refuses a known id); a job re-queued after
its worker died gets the next id, so arq's stuck in-progress key of the dead
run (arq#343) never blocks it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix

from gateway.db.models import Job

FUNCTION = "run_job"
LEASE_TTL_MS = 6000
_RENEW = """
local v = redis.call('GET', KEYS[1])
if (not v) or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def arq_id(job: Job) -> str:
    """The deterministic arq job id of the job's next run."""
    return f"{job.id}:{job.attempts or 0}"


@dataclass(frozen=True, slots=True)
class Keys:
    """Redis names of one deployment: gateways and workers sharing a job table share them."""

    prefix: str

    @classmethod
    def for_database(cls, database_url: str) -> Keys:
        """Derived from the database URL, so separate deployments on one Redis never mix."""
        digest = hashlib.sha256(database_url.encode()).hexdigest()[:12]
        return cls(f"pacs-gateway:{digest}")

    @property
    def queue(self) -> str:
        """arq's queue (a sorted set)."""
        return f"{self.prefix}:queue"

    @property
    def auth_epoch(self) -> str:
        """A counter of changes to who may come in (gateway.auth.epoch)."""
        return f"{self.prefix}:auth:epoch"

    @property
    def all_events(self) -> str:
        """The pub/sub channel of every job's events."""
        return f"{self.prefix}:events"

    def lease(self, job_id: str) -> str:
        """Held by the worker running the job, renewed while it runs."""
        return f"{self.prefix}:lease:{job_id}"

    def cancel(self, job_id: str) -> str:
        """Set when cancelling was requested (the DB flag is the truth; this is the fast path)."""
        return f"{self.prefix}:cancel:{job_id}"

    @property
    def audit_syslog(self) -> str:
        """Id of the last audit event forwarded to syslog (gateway.auth.syslog)."""
        return f"{self.prefix}:audit:syslog"

    def tick(self, name: str) -> str:
        """A lock so that one worker of many starts a periodic task."""
        return f"{self.prefix}:tick:{name}"


async def enqueue(redis: ArqRedis, keys: Keys, job: Job, defer_s: float = 0) -> bool:
    """Put the job's next run on the queue; False when arq already has it."""
    queued = await redis.enqueue_job(
        FUNCTION, job.id, _job_id=arq_id(job), _queue_name=keys.queue, _defer_by=defer_s or None
    )
    return queued is not None


async def is_queued(redis: ArqRedis, keys: Keys, job: Job) -> bool:
    """Whether arq knows the job's current run (queued or in progress)."""
    key = arq_id(job)
    if await redis.zscore(keys.queue, key) is not None:
        return True
    return bool(await redis.exists(job_key_prefix + key, in_progress_key_prefix + key))


async def forget(redis: ArqRedis, keys: Keys, arq_job_id: str) -> None:
    """Drop every trace of one arq run (a dead worker's run)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(keys.queue, arq_job_id)
        for prefix in (job_key_prefix, in_progress_key_prefix, retry_key_prefix):
            pipe.delete(prefix + arq_job_id)
        await pipe.execute()


async def take_lease(redis: ArqRedis, keys: Keys, job_id: str, token: str) -> bool:
    """Take or renew the job's lease; False when another live worker holds it."""
    ok = await redis.eval(_RENEW, 1, keys.lease(job_id), token, str(LEASE_TTL_MS))  # type: ignore[misc]
    return bool(ok)


async def drop_lease(redis: ArqRedis, keys: Keys, job_id: str, token: str) -> None:
    """Release the lease if it is still ours."""
    await redis.eval(_RELEASE, 1, keys.lease(job_id), token)  # type: ignore[misc]


async def has_lease(redis: ArqRedis, keys: Keys, job_id: str) -> bool:
    """Whether some worker holds the job's lease."""
    return bool(await redis.exists(keys.lease(job_id)))
