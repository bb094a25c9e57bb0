"""The engine's GraphQL API (``POST /v0/gql``): the Inngest dev server's schema, over the engine's state.

Field names, types and enum values follow the Inngest server's schema (``pkg/coreapi``), so tools
written against the dev server (the official SDKs' test harnesses, scripts) work unchanged. Only a
subset is served; the schema grows by adding a type to ``SCHEMA`` and a resolver to ``_Resolvers``.
Resolvers read SQLite on the engine's loop thread, like every other read of the engine's state.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, build_schema, graphql_sync

from eagerstep.core import protocol
from eagerstep.engine.model import _iso
from eagerstep.engine.store import dumps, loads

if TYPE_CHECKING:
    from eagerstep.engine.engine import Engine

log = logging.getLogger("eagerstep.engine")

SCHEMA = build_schema(
    """
scalar ULID
scalar UUID
scalar Time
scalar Bytes
scalar Unknown

enum FunctionRunStatus { COMPLETED FAILED CANCELLED RUNNING QUEUED SKIPPED }
enum RunTraceSpanStatus { FAILED QUEUED RUNNING COMPLETED WAITING CANCELLED SKIPPED }
enum StepOp { INVOKE RUN SLEEP WAIT_FOR_EVENT AI_GATEWAY WAIT_FOR_SIGNAL }

input EventQuery { workspaceId: ID! = "local", eventId: ID! }
input FunctionRunQuery { workspaceId: ID! = "local", functionRunId: ID! }

type Query {
  event(query: EventQuery!): Event
  functionRun(query: FunctionRunQuery!): FunctionRun
  functions: [Function!]
  run(runID: String!): FunctionRunV2
  runTrace(runID: String!): RunTraceSpan!
  runTraceSpanOutputByID(outputID: String!): RunTraceSpanOutput!
  runTrigger(runID: String!): RunTraceTrigger!
}

type Function {
  id: UUID!
  slug: String!
  name: String!
  url: String!
}

type Event {
  id: ULID!
  name: String
  createdAt: Time
  payload: String
  raw: String
  totalRuns: Int
  functionRuns: [FunctionRun!]
}

type FunctionRun {
  id: ID!
  functionID: String!
  function: Function
  status: FunctionRunStatus
  startedAt: Time
  finishedAt: Time
  output: String
  eventID: ID!
}

type FunctionRunV2 {
  id: ULID!
  functionID: UUID!
  function: Function!
  traceID: String!
  queuedAt: Time!
  startedAt: Time
  endedAt: Time
  status: FunctionRunStatus!
  triggerIDs: [ULID!]!
  eventName: String
  isBatch: Boolean!
  output: Bytes
  trace(preview: Boolean): RunTraceSpan
  hasAI: Boolean!
}

type RunTraceSpan {
  functionID: UUID!
  runID: ULID!
  spanID: String!
  traceID: String!
  name: String!
  status: RunTraceSpanStatus!
  attempts: Int
  duration: Int
  outputID: String
  queuedAt: Time!
  startedAt: Time
  endedAt: Time
  childrenSpans: [RunTraceSpan!]!
  stepOp: StepOp
  stepID: String
  stepType: String!
  isRoot: Boolean!
  parentSpanID: String
  isUserland: Boolean!
}

type RunTraceSpanOutput {
  input: Bytes
  data: Bytes
  error: StepError
}

type StepError {
  message: String!
  name: String
  stack: String
  cause: Unknown
}

type RunTraceTrigger {
  eventName: String
  IDs: [ULID!]!
  payloads: [Bytes!]!
  timestamp: Time!
  isBatch: Boolean!
  cron: String
}
"""
)

#: The engine's run statuses as the server's ``FunctionRunStatus`` / ``RunTraceSpanStatus``.
_STATUS = {"Running": "RUNNING", "Completed": "COMPLETED", "Failed": "FAILED", "Cancelled": "CANCELLED"}
#: The engine's step ops (the ``steps.op`` column) as the server's ``StepOp``.
_STEP_OP = {
    "StepRun": "RUN",
    "StepFailed": "RUN",
    "Sleep": "SLEEP",
    "WaitForEvent": "WAIT_FOR_EVENT",
    "InvokeFunction": "INVOKE",
    "AIGateway": "AI_GATEWAY",
}
_RUN_COLUMNS = "id, function_id, event_id, events, status, output, error, created_at, started_at, ended_at"
#: Separates the run id from the step id in an output id (neither contains it).
_OUTPUT_SEP = ":"


def execute(engine: Engine, body: Any) -> tuple[int, dict[str, Any]]:
    """Run one GraphQL request body (``{query, variables, operationName}``); return (status, reply)."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return 400, {"errors": [{"message": 'expected a JSON object {"query": "...", "variables": {...}}'}]}
    variables = body.get("variables")
    if variables is not None and not isinstance(variables, dict):
        return 400, {"errors": [{"message": '"variables" must be a JSON object'}]}
    operation = body.get("operationName")
    result = graphql_sync(
        SCHEMA,
        body["query"],
        root_value=_Resolvers(engine).root(),
        variable_values=variables,
        operation_name=operation if isinstance(operation, str) else None,
    )
    reply: dict[str, Any] = {"data": result.data}
    if result.errors:
        reply["errors"] = [error.formatted for error in result.errors]
        for error in result.errors:
            if error.original_error is not None and not isinstance(error.original_error, GraphQLError):
                log.error("GraphQL resolver failed: %s", error.message, exc_info=error.original_error)
        if result.data is None and all(error.path is None for error in result.errors):
            # Parse and validation errors (nothing executed): the server answers 422, as gqlgen does.
            return 422, reply
    return 200, reply


class _Resolvers:
    """Builds the plain dicts graphql-core's default resolver walks; a callable value is a field
    resolved only when the query asks for it (``value(info, **args)``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.db = engine.db

    def root(self) -> dict[str, Any]:
        return {
            "event": lambda _info, query: self.event(str(query["eventId"])),
            "functionRun": lambda _info, query: self.function_run(str(query["functionRunId"])),
            "functions": lambda _info: [self.function(fid) for fid in sorted(self.engine.functions)],
            "run": lambda _info, runID: self.run(runID),
            "runTrace": lambda _info, runID: self._required(self.trace(runID), "run", runID),
            "runTraceSpanOutputByID": lambda _info, outputID: self.span_output(outputID),
            "runTrigger": lambda _info, runID: self.trigger(runID),
        }

    @staticmethod
    def _required(value: Any, what: str, ident: str) -> Any:
        if value is None:
            raise GraphQLError(f"{what} {ident} not found")
        return value

    def function(self, slug: str) -> dict[str, Any] | None:
        fn = self.engine.functions.get(slug)
        if fn is None:
            return None
        return {"id": fn.uuid, "slug": fn.id, "name": fn.config.name or fn.id, "url": fn.call_url("step")}

    def _run_row(self, run_id: str) -> tuple[Any, ...] | None:
        return self.db.one(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id=?", (run_id,))

    @staticmethod
    def _output(status: str, output: str | None, error: str | None) -> str | None:
        """The run's output as a JSON string: its return value, or its error once it failed."""
        if status == "Completed":
            return output if output is not None else "null"
        if error is None:
            return None
        body = loads(error)
        if isinstance(body, dict):  # the error as the SDK sent it: without the engine's own count
            body.pop("attempts", None)
        return dumps(body)

    def function_run(self, run_id: str) -> dict[str, Any] | None:
        row = self._run_row(run_id)
        if row is None:
            return None
        rid, fid, event_id, _events, status, output, error, created_at, started_at, ended_at = row
        return {
            "id": rid,
            "functionID": fid,
            "function": lambda _info: self.function(fid),
            "status": _STATUS.get(status, "RUNNING"),
            "startedAt": _iso(started_at or created_at),
            "finishedAt": _iso(ended_at),
            "output": self._output(status, output, error),
            "eventID": event_id or "",
        }

    def run(self, run_id: str) -> dict[str, Any] | None:
        row = self._run_row(run_id)
        if row is None:
            return None
        rid, fid, _event_id, events_text, status, output, error, created_at, started_at, ended_at = row
        fn = self.engine.functions.get(fid)
        events: list[dict[str, Any]] = loads(events_text)
        return {
            "id": rid,
            "functionID": fn.uuid if fn is not None else fid,
            "function": lambda _info: self._required(self.function(fid), "function", fid),
            "traceID": rid,
            "queuedAt": _iso(created_at),
            "startedAt": _iso(started_at or created_at),
            "endedAt": _iso(ended_at),
            "status": _STATUS.get(status, "RUNNING"),
            "triggerIDs": [str(e.get("id")) for e in events],
            "eventName": events[0].get("name") if events else None,
            "isBatch": len(events) > 1,
            "output": self._output(status, output, error),
            "trace": lambda _info, preview=None: self.trace(rid),
            "hasAI": bool(
                self.db.one("SELECT 1 FROM steps WHERE run_id=? AND op='AIGateway' LIMIT 1", (rid,))
            ),
        }

    def trace(self, run_id: str) -> dict[str, Any] | None:
        """The run's root span, one child span per step (in the order the steps finished), then
        the steps still running or waiting."""
        row = self._run_row(run_id)
        if row is None:
            return None
        rid, fid, _event_id, _events, status, _output, _error, created_at, started_at, ended_at = row
        fn = self.engine.functions.get(fid)
        fn_uuid = fn.uuid if fn is not None else fid
        root_id = f"{rid}-root"
        children: list[dict[str, Any]] = []
        for sid, name, op, memo_text, begun, ended in self.db.all(
            "SELECT id, name, op, memo, started_at, ended_at FROM steps WHERE run_id=? ORDER BY position",
            (rid,),
        ):
            failed = protocol.memo_kind(loads(memo_text)) is protocol.MemoKind.ERROR
            children.append(
                self._span(
                    rid,
                    fn_uuid,
                    span_id=sid,
                    parent=root_id,
                    name=name or sid,
                    status="FAILED" if failed else "COMPLETED",
                    begun=begun,
                    ended=ended,
                    output_id=f"{rid}{_OUTPUT_SEP}{sid}",
                    step_op=_STEP_OP.get(op or ""),
                )
            )
        live = self.engine.runs.get(rid)
        if live is not None:
            for sid in sorted(live.pending):
                children.append(
                    self._span(
                        rid,
                        fn_uuid,
                        span_id=sid,
                        parent=root_id,
                        name=live.names.get(sid) or sid,
                        status="RUNNING",
                        begun=live.started.get(sid),
                        ended=None,
                        output_id=None,
                        step_op=None,
                    )
                )
        root = self._span(
            rid,
            fn_uuid,
            span_id=root_id,
            parent=None,
            name=fid,
            status=_STATUS.get(status, "RUNNING"),
            begun=started_at or created_at,
            ended=ended_at,
            output_id=f"{rid}{_OUTPUT_SEP}" if ended_at is not None else None,
            step_op=None,
        )
        root["childrenSpans"] = children
        return root

    @staticmethod
    def _span(
        run_id: str,
        fn_uuid: str,
        *,
        span_id: str,
        parent: str | None,
        name: str,
        status: str,
        begun: float | None,
        ended: float | None,
        output_id: str | None,
        step_op: str | None,
    ) -> dict[str, Any]:
        return {
            "functionID": fn_uuid,
            "runID": run_id,
            "spanID": span_id,
            "traceID": run_id,
            "name": name,
            "status": status,
            "attempts": None,
            "duration": round((ended - begun) * 1000) if begun is not None and ended is not None else None,
            "outputID": output_id,
            "queuedAt": _iso(begun),
            "startedAt": _iso(begun),
            "endedAt": _iso(ended),
            "childrenSpans": [],
            "stepOp": step_op,
            "stepID": span_id if parent is not None else None,
            "stepType": step_op or "",
            "isRoot": parent is None,
            "parentSpanID": parent,
            "isUserland": False,
        }

    def span_output(self, output_id: str) -> dict[str, Any]:
        """A step's output (``data``, a JSON string) or error; the run's when the step id is empty."""
        run_id, sep, step_id = output_id.partition(_OUTPUT_SEP)
        if not sep:
            raise GraphQLError(f"output {output_id!r} not found")
        if not step_id:
            row = self.db.one("SELECT status, output, error FROM runs WHERE id=?", (run_id,))
            if row is None:
                raise GraphQLError(f"output {output_id!r} not found")
            status, output, error = row
            if status == "Completed":
                return {"input": None, "data": output if output is not None else "null", "error": None}
            return {"input": None, "data": None, "error": _step_error(loads(error))}
        row = self.db.one("SELECT memo FROM steps WHERE run_id=? AND id=?", (run_id, step_id))
        if row is None:
            raise GraphQLError(f"output {output_id!r} not found")
        memo = loads(row[0])
        kind = protocol.memo_kind(memo)
        if kind is protocol.MemoKind.ERROR:
            return {"input": None, "data": None, "error": _step_error(memo["error"])}
        value = memo["data"] if kind is protocol.MemoKind.DATA else memo
        return {"input": None, "data": dumps(value), "error": None}

    def trigger(self, run_id: str) -> dict[str, Any]:
        row = self.db.one("SELECT events, created_at FROM runs WHERE id=?", (run_id,))
        if row is None:
            raise GraphQLError(f"run {run_id} not found")
        events: list[dict[str, Any]] = loads(row[0])
        first = events[0] if events else {}
        ts = first.get("ts")
        cron = (
            (first.get("data") or {}).get("cron")
            if first.get("name") == protocol.EVENT_SCHEDULED_TIMER
            else None
        )
        return {
            "eventName": first.get("name"),
            "IDs": [str(e.get("id")) for e in events],
            "payloads": [dumps(e) for e in events],
            "timestamp": _iso(ts / 1000 if isinstance(ts, (int, float)) else row[1]),
            "isBatch": len(events) > 1,
            "cron": cron,
        }

    def event(self, event_id: str) -> dict[str, Any] | None:
        row = self.db.one("SELECT name, body, received_at FROM events WHERE id=?", (event_id,))
        if row is None:
            return None
        name, body, received_at = row
        event = loads(body)

        def runs(_info: Any) -> list[dict[str, Any]]:
            ids = self.db.all("SELECT id FROM runs WHERE event_id=? ORDER BY created_at", (event_id,))
            return [run for (rid,) in ids if (run := self.function_run(rid)) is not None]

        return {
            "id": event_id,
            "name": name,
            "createdAt": _iso(received_at),
            "payload": dumps(event.get("data")),
            "raw": body,
            "totalRuns": lambda _info: len(runs(_info)),
            "functionRuns": runs,
        }


def _step_error(error: Any) -> dict[str, Any]:
    """An error memo as the server's ``StepError`` (``message`` is required there)."""
    if not isinstance(error, dict):
        return {"message": json.dumps(error), "name": None, "stack": None, "cause": None}
    return {
        "message": str(error.get("message") or ""),
        "name": error.get("name"),
        "stack": error.get("stack"),
        "cause": error.get("cause"),
    }
