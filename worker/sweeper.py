"""The sweeper: send again the chunks of jobs whose task messages were lost (and put back on the
predict lane the prediction jobs of a worker that died holding them).

Celery on Redis can lose a message outright: the worker pops it from the queue and the
connection drops before kombu records it as unacknowledged (seen when Redis restarts). No
redelivery brings it back, and the job would never end. Every job records its chunks; a job
that has not moved for longer than a task could take (visibility timeout + time limit) while
the queues are empty has lost them, so its missing chunks are sent again. Running a chunk twice
is harmless (the job store counts it once), and one process in the cluster sweeps at a time.
"""

from __future__ import annotations

import logging

from celery import Celery

from core.jobs import JobStore
from core.lane import PredictLane
from core.queue import PUBLISH_RETRY, SCORE_CHUNK, batch_queue
from core.settings import Settings

log = logging.getLogger(__name__)


def stall_seconds(settings: Settings) -> float:
    return settings.visibility_timeout_seconds + settings.task_time_limit_seconds


def sweep(store: JobStore, celery: Celery, settings: Settings) -> int:
    """Send again every lost chunk; the number sent. Cheap when nothing is stalled."""
    r = store.r
    lock = f"{settings.key_prefix}:sweeper"
    if not r.set(lock, "1", nx=True, px=int(settings.restore_interval_seconds * 1000)):
        return 0  # another process swept within the interval
    stalled = store.stalled(stall_seconds(settings))
    lane = PredictLane(settings)
    if not stalled or any(r.llen(q) for q in (batch_queue(settings), lane.key)):
        return 0  # nothing stalled, or work still queued ahead of it
    sent = 0
    with celery.producer_or_acquire() as producer:
        for job_id in stalled:
            job, missing = store.missing_chunks(job_id)
            if job is None or job.status.finished:
                continue
            for chunk, first, rows in missing:
                if job.kind == "predict":
                    lane.push(r, job_id)
                else:
                    args = [job_id, chunk, first, rows]
                    celery.send_task(
                        SCORE_CHUNK, args=args, producer=producer, retry_policy=PUBLISH_RETRY
                    )
                sent += 1
            store.touch(job_id)
            log.warning("job %s had not moved; sent %d lost chunk(s) again", job_id, len(missing))
    return sent
