"""Configuration from CALLME_* environment variables: defaults, and a clear error for each bad one."""

from __future__ import annotations

import ipaddress

import pytest

from callme.settings import DAY, CallerConfig, Limits, Settings, StorageTimeouts

REQUIRED = {"CALLME_TABLE_NAME": "tasks", "CALLME_LEASE_TABLE_NAME": "leases", "CALLME_STATS_TABLE_NAME": "stats"}


def test_only_the_table_names_are_required_and_the_rest_has_defaults() -> None:
    settings = Settings.from_environ(REQUIRED)
    assert (settings.table_name, settings.lease_table_name, settings.stats_table_name) == ("tasks", "leases", "stats")
    assert settings.region == "us-east-1"
    assert settings.dynamodb_endpoint is None
    assert (settings.due_shards, settings.dispatch_slices, settings.dispatch.split_at) == (8, 1, 1000)
    assert settings.limits == Limits(
        max_body_bytes=131072,
        max_payload_bytes=65536,
        max_url_length=2048,
        max_retry=10,
        max_max_delay=1440,
        max_ahead_seconds=1826 * DAY,
        default_page_size=100,
        max_page_size=1000,
        retention_seconds=30 * DAY,
        max_batch_tasks=100,
        max_batch_body_bytes=3_000_000,
    )
    assert settings.egress.allowed == ()
    assert settings.dispatch_concurrency == 64
    assert (settings.connect_timeout, settings.read_timeout, settings.call_budget) == (3.0, 10.0, 15.0)
    assert settings.fanout == "inline"
    assert settings.dispatcher_function is None
    assert settings.signing_secret is None
    assert settings.signing_secret_id is None
    assert settings.auth_mode == "none"
    assert settings.answer_margin_seconds == 1.0
    assert settings.api_storage == StorageTimeouts(connect=1, read=2, attempts=4)
    assert settings.dispatcher_storage == StorageTimeouts(connect=2, read=5, attempts=4)


def test_the_dispatcher_s_defaults() -> None:
    dispatch = Settings.from_environ(REQUIRED).dispatch
    assert (dispatch.concurrency, dispatch.run_seconds, dispatch.call_budget) == (64, 40.0, 15.0)
    assert (dispatch.heartbeat_seconds, dispatch.record_seconds, dispatch.read_window) == (4.0, 2.0, 2.0)
    assert (dispatch.lease_seconds, dispatch.lease_wait) == (25.0, 25.0)
    assert (dispatch.backoff_base, dispatch.backoff_cap, dispatch.record_attempts) == (1.0, 120.0, 4)
    assert dispatch.retention_seconds == 30 * DAY
    assert Settings.from_environ(REQUIRED).caller == CallerConfig(3.0, 10.0, 15.0)


def test_each_part_s_configuration_is_built_from_the_settings() -> None:
    env = {**REQUIRED, "CALLME_CALL_BUDGET": "20", "CALLME_RETENTION_DAYS": "7", "CALLME_DISPATCH_CONCURRENCY": "8"}
    settings = Settings.from_environ(env)
    assert (settings.dispatch.call_budget, settings.caller.call_budget) == (20.0, 20.0)
    assert settings.dispatch.lease_seconds == 2 * 4.0 + 20.0 + 2.0, "the lease grows with the budget"
    assert settings.dispatch.retention_seconds == settings.limits.retention_seconds == 7 * DAY
    assert settings.dispatch.concurrency == 8
    assert settings.dispatcher_run_seconds == 40.0 + 20.0 + 2.0


@pytest.mark.parametrize("budget", ["0.5", "15", "120", "850"])
def test_a_lease_outlasts_a_late_heartbeat_and_a_whole_call_with_its_recording(budget: str) -> None:
    dispatch = Settings.from_environ({**REQUIRED, "CALLME_CALL_BUDGET": budget}).dispatch
    assert dispatch.lease_seconds >= 2 * dispatch.heartbeat_seconds + dispatch.call_budget + dispatch.record_seconds
    assert dispatch.call_room == dispatch.call_budget + dispatch.record_seconds


@pytest.mark.parametrize(("value", "mode"), [("", "none"), ("API_KEY", "api_key"), ("IAM", "iam")])
def test_the_auth_mode_is_read_as_the_console_names_it(value: str, mode: str) -> None:
    assert Settings.from_environ({**REQUIRED, "CALLME_AUTH_MODE": value}).auth_mode == mode


def test_a_payload_limit_a_request_body_cannot_hold_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^CALLME_MAX_PAYLOAD_BYTES \(200000\) is not below CALLME_MAX_BODY_BYTES"):
        Settings.from_environ({**REQUIRED, "CALLME_MAX_PAYLOAD_BYTES": "200000"})
    env = {**REQUIRED, "CALLME_MAX_PAYLOAD_BYTES": "200000", "CALLME_MAX_BODY_BYTES": "400000"}
    assert Settings.from_environ(env).limits.max_payload_bytes == 200000


def test_a_call_budget_no_dispatcher_run_could_hold_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^CALLME_CALL_BUDGET \(859\) is too long.*900 s"):
        Settings.from_environ({**REQUIRED, "CALLME_CALL_BUDGET": "859"})
    assert Settings.from_environ({**REQUIRED, "CALLME_CALL_BUDGET": "858"}).dispatcher_run_seconds == 900


def test_empty_variables_mean_their_defaults() -> None:
    env = {**REQUIRED, "CALLME_MAX_RETRY": "", "CALLME_DYNAMODB_ENDPOINT": "", "CALLME_SIGNING_SECRET": ""}
    settings = Settings.from_environ(env)
    assert settings.limits.max_retry == 10
    assert settings.dynamodb_endpoint is None
    assert settings.signing_secret is None


def test_given_values_are_used() -> None:
    env = {
        **REQUIRED,
        "AWS_REGION": "eu-west-1",
        "CALLME_DYNAMODB_ENDPOINT": "http://127.0.0.1:8000",
        "CALLME_DUE_SHARDS": "4",
        "CALLME_MAX_RETRY": "3",
        "CALLME_MAX_AHEAD_DAYS": "2",
        "CALLME_RETENTION_DAYS": "7",
        "CALLME_ALLOW_NETWORKS": "127.0.0.0/8",
        "CALLME_READ_TIMEOUT": "2.5",
        "CALLME_FANOUT": "lambda",
        "CALLME_DISPATCHER_FUNCTION": "dispatcher",
        "CALLME_SIGNING_SECRET_ID": "arn:secret",
        "CALLME_DISPATCH_HOST_SHARE": "25",
        "CALLME_DISPATCH_SLICES": "4",
        "CALLME_DISPATCH_SPLIT_AT": "500",
    }
    settings = Settings.from_environ(env)
    assert settings.region == "eu-west-1"
    assert settings.dynamodb_endpoint == "http://127.0.0.1:8000"
    assert settings.due_shards == 4
    assert settings.limits.max_retry == 3
    assert settings.limits.max_ahead_seconds == 2 * DAY
    assert settings.limits.retention_seconds == 7 * DAY
    assert settings.egress.allowed == (ipaddress.ip_network("127.0.0.0/8"),)
    assert settings.read_timeout == 2.5
    assert (settings.fanout, settings.dispatcher_function) == ("lambda", "dispatcher")
    assert settings.signing_secret_id == "arn:secret"
    assert (settings.dispatch.host_share, settings.dispatch.host_calls) == (25, 16), "25 % of 64 callers"
    assert (settings.dispatch_slices, settings.dispatch.split_at) == (4, 500)


def test_a_host_share_is_at_least_one_call_and_100_means_no_limit_of_its_own() -> None:
    assert Settings.from_environ(REQUIRED).dispatch.host_calls == 0
    tiny = {**REQUIRED, "CALLME_DISPATCH_HOST_SHARE": "1", "CALLME_DISPATCH_CONCURRENCY": "8"}
    assert Settings.from_environ(tiny).dispatch.host_calls == 1


def test_region_falls_back_to_aws_default_region() -> None:
    assert Settings.from_environ({**REQUIRED, "AWS_DEFAULT_REGION": "ap-south-1"}).region == "ap-south-1"


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_missing_table_name_is_named(name: str) -> None:
    env = {k: v for k, v in REQUIRED.items() if k != name}
    with pytest.raises(ValueError, match=f"^{name} is not set$"):
        Settings.from_environ(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CALLME_MAX_BODY_BYTES", "lots"),
        ("CALLME_MAX_BODY_BYTES", "100"),
        ("CALLME_MAX_PAYLOAD_BYTES", "-1"),
        ("CALLME_MAX_PAYLOAD_BYTES", str(300 * 1024 + 1)),
        ("CALLME_MAX_URL_LENGTH", "15"),
        ("CALLME_MAX_URL_LENGTH", "8193"),
        ("CALLME_MAX_RETRY", "101"),
        ("CALLME_MAX_RETRY", "1.5"),
        ("CALLME_MAX_MAX_DELAY", "0"),
        ("CALLME_MAX_AHEAD_DAYS", "0"),
        ("CALLME_DEFAULT_PAGE_SIZE", "0"),
        ("CALLME_MAX_PAGE_SIZE", "x"),
        ("CALLME_RETENTION_DAYS", "0"),
        ("CALLME_DUE_SHARDS", "0"),
        ("CALLME_DUE_SHARDS", "1001"),
        ("CALLME_DISPATCH_SLICES", "0"),
        ("CALLME_DISPATCH_SLICES", "101"),
        ("CALLME_DISPATCH_SPLIT_AT", "0"),
        ("CALLME_DISPATCH_CONCURRENCY", "0"),
        ("CALLME_DISPATCH_HOST_SHARE", "0"),
        ("CALLME_DISPATCH_HOST_SHARE", "101"),
        ("CALLME_CONNECT_TIMEOUT", "0"),
        ("CALLME_CONNECT_TIMEOUT", "soon"),
        ("CALLME_READ_TIMEOUT", "-1"),
        ("CALLME_READ_TIMEOUT", "900"),
        ("CALLME_CALL_BUDGET", "nan"),
        ("CALLME_CALL_BUDGET", "inf"),
        ("CALLME_ALLOW_NETWORKS", "loopback"),
        ("CALLME_ALLOW_NETWORKS", "127.0.0.0/8,10.0.0.0/40"),
        ("CALLME_FANOUT", "sqs"),
        ("CALLME_FANOUT", ""),
        ("CALLME_AUTH_MODE", "api_key"),
        ("CALLME_CALL_BUDGET", "880"),
    ],
)
def test_bad_variable_is_a_value_error_naming_it(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}[ :]"):
        Settings.from_environ({**REQUIRED, name: value})


def test_integer_error_states_the_allowed_range() -> None:
    with pytest.raises(ValueError, match=r"CALLME_MAX_RETRY must be between 0 and 100, got 101"):
        Settings.from_environ({**REQUIRED, "CALLME_MAX_RETRY": "101"})


def test_a_default_page_size_above_the_maximum_is_refused() -> None:
    env = {
        "CALLME_TABLE_NAME": "t",
        "CALLME_LEASE_TABLE_NAME": "l",
        "CALLME_STATS_TABLE_NAME": "s",
        "CALLME_DEFAULT_PAGE_SIZE": "500",
        "CALLME_MAX_PAGE_SIZE": "100",
    }
    with pytest.raises(ValueError, match="CALLME_DEFAULT_PAGE_SIZE"):
        Settings.from_environ(env)


def test_the_settings_never_show_the_signing_secret() -> None:
    from tests.conftest import settings as make_settings

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert secret not in repr(make_settings(signing_secret=secret)), "a failing test's report would print it"
