"""Predictions leave an API process together and come back through one list.

A request thread hands its prediction job to the gate and waits. The sender thread records
whatever jobs are waiting to go and puts them on the predict lane in one call
(JobStore.create_predictions); the worker that ends a job pushes its end onto this process's
reply list (core/lane.py), which the receiver thread reads many entries at a time, handing each
to the thread waiting for it. Under load a request costs a share of two round trips instead of
two of its own, and Redis wakes one reader instead of one per request.

Both threads start when there is work and stop after IDLE_SECONDS without any. A job whose caller
gave up (504, or ?wait= over) still ends; its reply is dropped and the job is read by its id.
If the reply list cannot be read (Redis went away), every waiter is woken without its reply and
reads its job itself, which answers 503 while Redis is away.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid

import redis

from core.connection import REDIS_DOWN, connect
from core.errors import Unavailable
from core.jobs import Job, JobStore, NewPrediction, parse_reply
from core.lane import PredictLane, take
from core.settings import Settings

log = logging.getLogger(__name__)

#: The most jobs sent in one call, and replies read in one call.
MOST = 128
#: How long each thread lingers without work before it stops.
IDLE_SECONDS = 5.0
#: How long the receiver blocks on the reply list at a time.
BLOCK_SECONDS = 1.0


class Ticket:
    """One job on its way. ``done`` is held until the job is answered for: recorded (if nobody
    waits for its end), ended (``reply``: its record and answers), or failed to be sent
    (``error``). Whoever takes a waited-for ticket off ``_waiting`` releases it, so once."""

    __slots__ = ("job", "done", "error", "reply")

    def __init__(self, job: NewPrediction) -> None:
        self.job = job
        self.done = threading.Lock()  # (a bare lock is the cheapest wake-up between threads)
        self.done.acquire()
        self.error: BaseException | None = None
        self.reply: tuple[Job, bytes | None] | None = None


class PredictGate:
    def __init__(self, settings: Settings, lane: PredictLane) -> None:
        self.settings = settings
        self.lane = lane
        self.reply_to = lane.reply_key(uuid.uuid4().hex)
        self._outbox: queue.SimpleQueue[Ticket] = queue.SimpleQueue()
        self._waiting: dict[str, Ticket] = {}
        self._lock = threading.Lock()  # starting and stopping the threads
        self._sending = False
        self._receiving = False

    def submit(
        self, job_id: str, owner: str, rows: int, data: bytes, wait: float
    ) -> tuple[Job, bytes | None] | None:
        """Record a prediction job and put it on the lane; with ``wait``, wait up to that many
        seconds for it to end. Its record and answers as it ended, or None (not waited for,
        not ended in time, or its end could not be read: then read the job by its id).

        :raises Unavailable: if Redis is unreachable (nothing was recorded, or a job nobody
            will ask for, which ends like any other).
        """
        reply_to = self.reply_to if wait > 0 else ""
        ticket = Ticket(NewPrediction(job_id, owner, rows, data, reply_to))
        if reply_to:
            self._waiting[job_id] = ticket
            if not self._receiving:
                self._start("_receiving", self._receive)
        self._outbox.put(ticket)
        if not self._sending:
            self._start("_sending", self._send)
        sending = self.settings.redis_timeout * 3 + 1
        answered = ticket.done.acquire(timeout=wait if reply_to else sending)
        self._waiting.pop(job_id, None)
        if not answered and not reply_to:  # (a waiter that ran out of time just reads the job)
            ticket.error = TimeoutError("Redis did not answer")
        if isinstance(ticket.error, (*REDIS_DOWN, TimeoutError)):
            raise Unavailable("the job store (Redis) is unreachable; try again shortly")
        if ticket.error is not None:
            raise RuntimeError(f"recording the prediction failed: {ticket.error!r}")
        return ticket.reply

    def _start(self, flag: str, target) -> None:
        with self._lock:
            if not getattr(self, flag):
                setattr(self, flag, True)
                threading.Thread(target=target, name=f"gate{flag}", daemon=True).start()

    def _stop(self, flag: str, more) -> bool:
        """Whether the thread behind ``flag`` may stop: nothing ``more`` to do. (Its starters
        add work first and then look at the flag; so set the flag first, then look.)"""
        with self._lock:
            setattr(self, flag, False)
            if not more():
                return True
            setattr(self, flag, True)
            return False

    def _send(self) -> None:
        jobs: JobStore | None = None  # the sender's own client, made when Redis answers
        while True:
            try:
                batch = [self._outbox.get(timeout=IDLE_SECONDS)]
            except queue.Empty:
                if self._stop("_sending", lambda: not self._outbox.empty()):
                    if jobs is not None:
                        jobs.r.close()
                    return
                continue
            while len(batch) < MOST:
                try:
                    batch.append(self._outbox.get_nowait())
                except queue.Empty:
                    break
            error = None
            try:
                jobs = jobs or JobStore(connect(self.settings, single=True), self.settings)
                jobs.create_predictions([t.job for t in batch], self.lane.key)
            except Exception as exc:  # each request answers for itself (503, or 500)
                log.warning("recording %d predictions failed: %s", len(batch), exc)
                error = exc
            for ticket in batch:
                if not ticket.job.reply_to:
                    ticket.error = error
                    ticket.done.release()
                elif error is not None and self._waiting.pop(ticket.job.job_id, None):
                    ticket.error = error
                    ticket.done.release()

    def _receive(self) -> None:
        read_timeout = BLOCK_SECONDS + self.settings.redis_timeout * 2
        r: redis.Redis | None = None  # its own client, made when Redis answers
        idle = 0.0
        try:
            while True:
                try:
                    r = r or connect(self.settings, read_timeout=read_timeout, single=True)
                    entries = take(r, self.reply_to, MOST, BLOCK_SECONDS)
                    ended = [parse_reply(entry) for entry in entries]
                except Exception as exc:  # (the thread must go on: requests wait on it)
                    log.warning("reading replies failed: %s: %s", type(exc).__name__, exc)
                    self._wake_all()
                    time.sleep(BLOCK_SECONDS)
                    entries, ended = [], []
                idle = 0.0 if entries else idle + BLOCK_SECONDS
                for job_id, job, output in ended:
                    ticket = self._waiting.pop(job_id, None)
                    if ticket is not None:  # (else its caller gave up)
                        ticket.reply = (job, output)
                        ticket.done.release()
                if idle >= IDLE_SECONDS and self._stop("_receiving", lambda: self._waiting):
                    return
        finally:
            if r is not None:
                r.close()

    def _wake_all(self) -> None:
        """Let every waiter read its job itself."""
        for job_id in list(self._waiting):
            ticket = self._waiting.pop(job_id, None)
            if ticket is not None:
                ticket.done.release()
