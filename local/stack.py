"""Wiring the local stack together and running it until Ctrl-C."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callme.settings import Settings

from .dynamodb import (
    REGION,
    TABLE_NAMES,
    EmbeddedDynamoDB,
    MissingTables,
    ensure_tables,
    index_lag_from,
    may_create_tables,
)
from .gateway import GatewayResponses, LambdaFunction, LocalApiGateway
from .lambda_context import LocalContext
from .state import StateFolder, StateFolderInUse
from .template import function_timeout, gateway_responses, load_template
from .ticker import MinuteTicker

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.0/8,::1/128"


@dataclass
class Options:
    host: str = "127.0.0.1"
    port: int = 6777
    state_dir: Path = Path(".callme")
    ticks: bool = True
    test_hooks: bool = False


def prepare_environment(state: StateFolder) -> str:
    """Set the variables the handlers read, as template.yaml sets them in AWS. Returns the secret."""
    env = os.environ
    env.setdefault("CALLME_TABLE_NAME", TABLE_NAMES["TasksTable"])
    env.setdefault("CALLME_LEASE_TABLE_NAME", TABLE_NAMES["LeasesTable"])
    env.setdefault("CALLME_STATS_TABLE_NAME", TABLE_NAMES["StatsTable"])
    env.setdefault("CALLME_SCHEDULE_TABLE_NAME", TABLE_NAMES["SchedulesTable"])
    env.setdefault("CALLME_ALLOW_NETWORKS", LOOPBACK)
    env.setdefault("CALLME_FANOUT", "inline")
    env.setdefault("AWS_DEFAULT_REGION", REGION)
    env.setdefault("POWERTOOLS_SERVICE_NAME", "callme")
    env.setdefault("POWERTOOLS_METRICS_NAMESPACE", "callme")
    env.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    env.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    if may_create_tables(env.get("CALLME_DYNAMODB_ENDPOINT") or None):  # a DynamoDB on this machine
        env.setdefault("AWS_ACCESS_KEY_ID", "local")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    if not env.get("CALLME_SIGNING_SECRET"):
        from callme.signing import new_secret

        env["CALLME_SIGNING_SECRET"] = state.signing_secret(new_secret())
    if not env.get("CALLME_HEADERS_KEY"):
        from callme.sealing import new_key

        env["CALLME_HEADERS_KEY"] = state.headers_key(new_key())
    return env["CALLME_SIGNING_SECRET"]


class LocalStack:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.state = StateFolder(options.state_dir)
        self.database: EmbeddedDynamoDB | None = None
        self.gateway: LocalApiGateway | None = None
        self.ticker: MinuteTicker | None = None

    def start(self) -> None:
        options = self.options
        self.state.lock()  # before anything in the folder is read or written
        secret = prepare_environment(self.state)
        endpoint = os.environ.get("CALLME_DYNAMODB_ENDPOINT")
        if endpoint:
            settings = Settings.from_environ(os.environ)  # the table names and region the handlers use
            needed = {"TasksTable": settings.table_name}
            if options.ticks or options.test_hooks:  # the dispatcher runs here: it takes leases, writes stats
                needed["LeasesTable"] = settings.lease_table_name
                needed["StatsTable"] = settings.stats_table_name
            ensure_tables(endpoint, names=needed, region=settings.region)
            where = f"DynamoDB at {endpoint} ({', '.join(needed.values())} in {settings.region})"
        else:
            self.database = EmbeddedDynamoDB(options.state_dir, index_lag=index_lag_from(os.environ))
            self.database.start()
            os.environ["CALLME_DYNAMODB_ENDPOINT"] = self.database.endpoint
            where = f"embedded DynamoDB, state kept in {options.state_dir}/"
            if self.database.index_lag:
                where += f"; the due index lags {self.database.index_lag:g} s"

        from handlers import api, dispatcher

        routes: dict[str, Any] = {"/_local/tick": self._tick} if options.test_hooks else {}
        function = LambdaFunction("callme-api", api.lambda_handler, _timeout("ApiFunction"))
        responses = GatewayResponses(gateway_responses(load_template()))
        self.gateway = LocalApiGateway((options.host, options.port), function, routes, responses)
        if options.ticks:
            self.ticker = MinuteTicker(lambda event: dispatcher.lambda_handler(event, _dispatcher_context()))
            self.ticker.start()
        allowed = os.environ.get("CALLME_ALLOW_NETWORKS") or "none"
        print(f"callme API listening on {self.gateway.url}", flush=True)
        print(f"  storage:    {where}", flush=True)
        print(f"  dispatcher: {'every minute, at second 0' if options.ticks else 'off (test ticks only)'}", flush=True)
        print(f"  callbacks to these private networks are allowed (local only): {allowed}", flush=True)
        print(f"  signing secret (verify webhook-signature with it): {secret}", flush=True)

    def serve_forever(self) -> None:
        assert self.gateway is not None
        self.gateway.serve_forever()

    def stop(self) -> None:
        if self.ticker:
            self.ticker.stop()
        if self.gateway:
            self.gateway.shutdown()
            self.gateway.server_close()
        if self.database:
            self.database.stop()
        self.state.release()

    def _tick(self, event: dict[str, Any], _: Any) -> dict[str, Any]:
        """Test hook: run the dispatcher now, as if it were ``at`` (a Unix time) on the clock."""
        from callme.clock import OffsetClock
        from handlers import dispatcher

        request = json.loads(event.get("body") or "{}")
        at = float(request["at"])
        clock = OffsetClock(at - time.time())
        on_leased = None
        if request.get("crash_after_lease"):

            def on_leased(shards: list[int]) -> None:
                log.warning("test hook: dying after leasing shards %s", shards)
                os._exit(137)

        context: Any = _dispatcher_context()
        report = dispatcher.dispatch({"scheduled_time": str(at)}, context, clock, on_leased)
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(report)}


def _dispatcher_context() -> LocalContext:
    return LocalContext.for_function("callme-dispatcher", _timeout("DispatcherFunction"))


@functools.cache
def _timeout(logical_id: str) -> float:
    """A function's timeout in template.yaml, as Lambda enforces it."""
    return function_timeout(load_template(), logical_id)


def run(options: Options) -> None:
    # The local stack logs as "local.*": Powertools drops any logger named "callme..." from the root handlers.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server: one line per request
    stack = LocalStack(options)
    try:
        stack.start()
    except (StateFolderInUse, MissingTables) as error:
        print(f"callme: {error}", file=sys.stderr, flush=True)
        sys.exit(1)

    def shutdown(signum: int, frame: object) -> None:
        print("\nstopping callme...", flush=True)
        threading.Thread(target=stack.stop, daemon=True).start()

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    try:
        stack.serve_forever()
    finally:
        stack.stop()
    print("callme stopped", flush=True)
    sys.exit(0)
