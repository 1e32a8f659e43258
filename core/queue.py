"""The Celery app both sides use: the API sends tasks by name, the worker registers them.

Celery is the transport only; jobs live in the job store. The settings here are the defaults
DESIGN.md argues for: JSON only, late acks, prefetch 1, bounded publish retries.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from core.settings import Settings

#: The one task: score a chunk of a CSV job. (Predictions take the lighter predict lane,
#: core/lane.py.)
SCORE_CHUNK = "worker.score_chunk"


#: How long a publish may retry before the API answers 503.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def batch_queue(settings: Settings) -> str:
    """The Celery queue of CSV chunks, under the key prefix, so deployments sharing a Redis stay
    apart."""
    return f"{settings.key_prefix}.batch"


def make_celery(settings: Settings) -> Celery:
    app = Celery("queue_inference", broker=settings.redis_url, set_as_current=False)
    queue = batch_queue(settings)
    timeout = settings.redis_timeout
    app.conf.update(
        # Pickle on the wire is remote code execution: accept JSON and nothing else.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_accept_content=["json"],
        # Results live in the job store; the Celery result backend stays off.
        task_ignore_result=True,
        # A task is acknowledged after it ran, and requeued if its process dies; the job
        # store caps how often one chunk may come back (see worker.tasks).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A task killed by its time limit comes back too; the redelivery cap ends it.
        task_acks_on_timeout=False,
        task_acks_on_failure=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.worker_concurrency or None,  # None: one process per core
        task_time_limit=settings.task_time_limit_seconds,
        # The soft limit leaves room to put the task back before the hard limit kills it.
        task_soft_time_limit=settings.task_time_limit_seconds * 0.8,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_seconds,
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout * 2,
            "max_retries": 1,
            # Tasks of a worker that died come back once older than the visibility timeout;
            # look for them this often (kombu's default is 10 s x 10 calls).
            "unacked_restore_interval": settings.restore_interval_seconds,
            "unacked_restore_throttle": 1,
        },
        task_publish_retry=True,
        task_publish_retry_policy=PUBLISH_RETRY,
        task_queues=[Queue(queue)],
        task_default_queue=queue,
        task_routes={SCORE_CHUNK: {"queue": queue}},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app
