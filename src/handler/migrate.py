"""CloudFormation custom resource: apply the schema migrations on every create and update of the stack.

Migrations take a PostgreSQL advisory lock, so this and a developer's ``ocds-ingest migrate`` cannot collide. A
failure is reported to CloudFormation (the deploy rolls back with the reason) instead of leaving it waiting.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from aws_lambda_powertools import Logger

from handler import environment
from ingest.store.migrate import migrate

logger = Logger(service="ocds-migrate")


def respond(event: dict[str, Any], context: Any, status: str, reason: str, data: dict[str, Any]) -> None:
    body = json.dumps({
        "Status": status, "Reason": reason[:3000], "PhysicalResourceId": "ocds-ingest-schema",
        "StackId": event["StackId"], "RequestId": event["RequestId"], "LogicalResourceId": event["LogicalResourceId"],
        "Data": data,
    }).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                     headers={"Content-Type": "", "Content-Length": str(len(body))})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - CloudFormation's presigned URL
        response.read()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> None:
    # Never the whole event: its ResponseURL is a presigned URL that lets anyone answer for this stack.
    logger.info("schema migration requested", extra={key: event.get(key) for key in (
        "RequestType", "LogicalResourceId", "RequestId", "StackId", "ResourceProperties")})
    if event.get("RequestType") == "Delete":
        respond(event, context, "SUCCESS", "the schema is kept when the stack is deleted", {})
        return
    try:
        db = environment.database_connector()()
        try:
            applied = migrate(db)
        finally:
            db.close()
    except Exception as error:  # noqa: BLE001 - any failure must reach CloudFormation, or the deploy hangs
        logger.exception("migration failed")
        respond(event, context, "FAILED", f"migration failed: {error}", {})
        return
    respond(event, context, "SUCCESS", f"applied: {', '.join(applied) or 'nothing, the schema is current'}",
            {"Applied": ",".join(applied)})
