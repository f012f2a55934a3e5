"""``ocds-ingest drain``: a queue's messages through the worker handler, with AWS's errors said in one line."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

from ingest.errors import ConfigurationError, TransientError

_REGION_IN_URL = re.compile(r"^https?://sqs[.-]([a-z0-9-]+)\.amazonaws\.com")


def region(args: argparse.Namespace) -> str:
    """--region, else the environment's, else the one in an AWS queue URL; never a silent default."""
    found = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not found and (match := _REGION_IN_URL.match(args.queue_url)):
        found = match.group(1)
    if not found:
        raise ConfigurationError("no AWS region: pass --region (or set AWS_REGION); an emulator takes any region")
    return found


def aws_error(exc: Exception, args: argparse.Namespace, where: str) -> Exception:
    """One line for botocore's errors: what failed and what to change."""
    from botocore import exceptions

    if isinstance(exc, (exceptions.NoCredentialsError, exceptions.PartialCredentialsError)):
        return ConfigurationError("no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                                  "AWS_SECRET_ACCESS_KEY (an emulator accepts any values)")
    if isinstance(exc, exceptions.EndpointConnectionError):
        return TransientError(f"cannot reach {exc.kwargs.get('endpoint_url') or where}: is the endpoint "
                              "running, and are --endpoint-url and --region right?")
    if isinstance(exc, exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
            return ConfigurationError(f"there is no queue {args.queue_url} (region {args.resolved_region}): "
                                      "check --queue-url, --region and --endpoint-url")
        if code in ("InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException",
                    "AccessDenied", "AccessDeniedException"):
            return ConfigurationError(f"AWS refused the credentials or the permission ({code}: {message})")
        return ConfigurationError(f"SQS refused {where}: {code}: {message}")
    return ConfigurationError(f"{where}: {exc}")


def run(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from ingest.local_pipeline import (
        compile_line,
        database_now,
        environment,
        quiet,
        quiet_handler,
        rejected_messages_since,
    )

    url = os.environ["DATABASE_URL"]
    started_at = database_now(url)
    # The handler's own SQS client (messages told to wait go back on this queue) uses the same endpoint.
    sqs_endpoint = {"AWS_ENDPOINT_URL_SQS": args.endpoint_url} if args.endpoint_url else {}
    with environment(sqs_endpoint), quiet(args.verbose):
        import handler.compile
        import handler.worker
        from ingest.queue import EventSourceEmulator, LocalContext

        began = time.perf_counter()
        try:
            sqs = boto3.client("sqs", endpoint_url=args.endpoint_url, region_name=args.resolved_region)
            emulator = EventSourceEmulator(sqs, args.queue_url, quiet_handler(handler.worker.lambda_handler),
                                           batch_size=min(args.batch_size, 10),
                                           function_timeout_seconds=args.timeout)
            total = emulator.drain()
            # Then the compile step once, as the scheduled compile function would (a worker set to compile
            # inline, or not at all, leaves nothing for it).
            compiled = quiet_handler(handler.compile.lambda_handler)({}, LocalContext(900))
        except KeyboardInterrupt:
            print("ocds-ingest drain: interrupted; the messages already handled are written and deleted, the rest "
                  "stay in the queue", file=sys.stderr)
            return 130
        except (BotoCoreError, ClientError) as exc:
            raise aws_error(exc, args, f"reading {args.queue_url}") from None
    rejected = rejected_messages_since(url, started_at)
    written = total.succeeded - rejected
    print(f"messages received {total.received}: {written} written, {rejected} rejected (see rejected_messages), "
          f"{total.failed} reported for retry, {total.handler_errors} invocation errors "
          f"({time.perf_counter() - began:.1f} s)")
    print(compile_line(compiled))
    if total.failed or total.handler_errors:
        if not args.verbose:
            print("run it again with --verbose to see why messages failed", file=sys.stderr)
        return 1
    return 0
