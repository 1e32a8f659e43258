"""qinfer: the service from a terminal. Submit a CSV and watch it, fetch results, cancel, score one
row, or pipe JSON records through the stream.

  qinfer submit flowers.csv               upload, show progress, write flowers.scored.csv
  qinfer status JOB_ID | result JOB_ID [-o FILE] | errors JOB_ID [-o FILE] | cancel JOB_ID
  qinfer predict 5.1 3.5 1.4 0.2
  qinfer stream < records.ndjson > results.ndjson

The API is --url (or QINFER_URL, default http://127.0.0.1:5000), its key --api-key (or
QINFER_API_KEY); the stream uses --redis-url (or REDIS_URL) and STREAM_INPUT/STREAM_OUTPUT.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from cli.client import ApiClient, CliError
from cli.progress import ProgressBar

FINISHED = ("succeeded", "failed", "cancelled")


def _watch(api: ApiClient, job_id: str, quiet: bool) -> dict:
    """Follow the job to its end: live events, or polling if the stream is refused."""
    bar = None if quiet else ProgressBar()
    job: dict = {}
    try:
        try:
            for kind, data in api.events(f"/v1/jobs/{job_id}/events"):
                if kind in ("progress", "end"):
                    job = data
                    if bar:
                        bar.update(job)
        except CliError as exc:
            if exc.code == 2:
                raise
        while job.get("status") not in FINISHED:  # no events (or cut short): poll
            job = api.json("GET", f"/v1/jobs/{job_id}")
            if bar:
                bar.update(job)
            if job["status"] not in FINISHED:
                time.sleep(0.5)
    finally:
        if bar:
            bar.close()
    return job


def _save(api: ApiClient, path: str, target: str | None) -> None:
    if target in (None, "-"):
        api.download(path, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    with open(target, "wb") as fh:
        api.download(path, fh)


def cmd_submit(api: ApiClient, args: argparse.Namespace) -> int:
    source = Path(args.file)
    if not source.is_file():
        raise CliError(f"no such file: {source}", code=2)
    accepted = api.upload(source)
    job_id = accepted["job_id"]
    if args.no_wait:
        print(job_id)
        return 0
    print(f"job {job_id} queued", file=sys.stderr)
    job = _watch(api, job_id, args.quiet)
    progress = job["progress"]
    result = args.output or str(source.with_suffix("")) + ".scored.csv"
    _save(api, job["result_url"], result)
    written = [result]
    if progress["rows_failed"]:
        errors = args.errors or str(source.with_suffix("")) + ".errors.csv"
        _save(api, job["errors_url"], errors)
        written.append(errors)
    print(
        f"job {job_id} {job['status']}: {progress['rows_done']:,} rows scored, "
        f"{progress['rows_failed']:,} not scored; wrote {', '.join(written)}",
        file=sys.stderr,
    )
    if job["status"] != "succeeded":
        raise CliError(f"job {job_id} {job['status']}: {job.get('error') or 'see its errors'}")
    return 0


def cmd_status(api: ApiClient, args: argparse.Namespace) -> int:
    print(json.dumps(api.json("GET", f"/v1/jobs/{args.job_id}"), indent=2))
    return 0


def cmd_result(api: ApiClient, args: argparse.Namespace) -> int:
    _save(api, f"/v1/jobs/{args.job_id}/{args.command}", args.output)
    return 0


def cmd_cancel(api: ApiClient, args: argparse.Namespace) -> int:
    job = api.json("DELETE", f"/v1/jobs/{args.job_id}")
    print(f"job {job['job_id']} {job['status']}", file=sys.stderr)
    return 0


def cmd_predict(api: ApiClient, args: argparse.Namespace) -> int:
    if args.json:
        try:
            features = json.loads(args.json)
        except ValueError:
            raise CliError("--json is not valid JSON", code=2) from None
    else:
        features = args.features
    if not features:
        raise CliError("give the features as numbers, or --json", code=2)
    print(json.dumps(api.json("POST", "/predict", {"features": features})))
    return 0


def cmd_stream(api: ApiClient, args: argparse.Namespace) -> int:
    import redis

    from cli.stream import pipe
    from core.connection import REDIS_DOWN
    from core.settings import Settings

    settings = Settings.from_env(**({"redis_url": args.redis_url} if args.redis_url else {}))
    r = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=10)
    try:
        left = pipe(r, sys.stdin, sys.stdout, settings.stream_input, settings.stream_output,
                    args.timeout)  # fmt: skip
    except REDIS_DOWN as exc:
        raise CliError(f"cannot reach Redis at {settings.redis_url}: {exc}", code=2) from None
    if left:
        raise CliError(
            f"{left} records got no answer within {args.timeout:g}s (is a stream worker running?)"
        )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qinfer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--url", default=os.environ.get("QINFER_URL", "http://127.0.0.1:5000"))
    p.add_argument("--api-key", default=os.environ.get("QINFER_API_KEY", ""))
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", help="upload a CSV, wait with a progress bar, write the result")
    s.add_argument("file")
    s.add_argument("-o", "--output", help="result file (default: FILE.scored.csv; - for stdout)")
    s.add_argument(
        "--errors", help="errors file, written when rows failed (default FILE.errors.csv)"
    )
    s.add_argument("--no-wait", action="store_true", help="print the job id and return")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(run=cmd_submit)
    for name, helptext in [("status", "show a job"), ("cancel", "cancel a job")]:
        c = sub.add_parser(name, help=helptext)
        c.add_argument("job_id")
        c.set_defaults(run=cmd_status if name == "status" else cmd_cancel)
    for name in ("result", "errors"):
        c = sub.add_parser(name, help=f"download a finished job's {name} (stdout by default)")
        c.add_argument("job_id")
        c.add_argument("-o", "--output")
        c.set_defaults(run=cmd_result)
    c = sub.add_parser("predict", help="score one row: qinfer predict 5.1 3.5 1.4 0.2")
    c.add_argument("features", nargs="*", type=float)
    c.add_argument("--json", help="the features as JSON, e.g. '{\"sepal_length\": 5.1, ...}'")
    c.set_defaults(run=cmd_predict)
    c = sub.add_parser("stream", help="pipe JSON lines through the Redis stream")
    c.add_argument("--redis-url", default="", help="default: REDIS_URL")
    c.add_argument("--timeout", type=float, default=30.0,
                   help="give up after this many seconds without an answer")  # fmt: skip
    c.set_defaults(run=cmd_stream)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    api = ApiClient(args.url, args.api_key)
    try:
        return args.run(api, args)
    except CliError as exc:
        print(f"qinfer: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("qinfer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
