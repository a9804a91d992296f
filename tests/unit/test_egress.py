"""Which addresses a callback may reach, and the callback URL rules."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callme.egress import EgressPolicy, check_callback_url, literal_address
from callme.limits import Limits
from tests.unit.conftest import rejected

MAX_URL = Limits().max_url_length

# -- EgressPolicy.refusal ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.0.0.1", "not a public address"),
        ("172.16.0.1", "not a public address"),
        ("172.31.255.254", "not a public address"),
        ("192.168.1.1", "not a public address"),
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT
        ("100.127.255.254", "not a public address"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("169.254.170.2", "link-local"),  # ECS credentials
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "not a public address"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "not a public address"),
        ("255.255.255.255", "not a public address"),
        ("192.0.2.1", "not a public address"),  # documentation
        ("198.18.0.1", "not a public address"),  # benchmarking
        ("fc00::1", "not a public address"),
        ("fd12:3456::1", "not a public address"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fd00:ec2::254", "link-local"),  # EC2 IPv6 metadata
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "not a public address"),
        ("::ffff:127.0.0.1", "embeds 127.0.0.1"),
        ("::ffff:10.0.0.1", "embeds 10.0.0.1"),
        ("::ffff:169.254.169.254", "embeds 169.254.169.254"),
        ("2002:7f00:1::", "embeds 127.0.0.1"),  # 6to4
        ("2002:a00:1::", "embeds 10.0.0.1"),
        ("64:ff9b::a00:1", "embeds 10.0.0.1"),  # NAT64
        ("64:ff9b::7f00:1", "embeds 127.0.0.1"),
    ],
)
def test_non_public_address_is_refused_with_a_reason(policy: EgressPolicy, address: str, reason: str) -> None:
    refusal = policy.refusal(address)
    assert refusal is not None
    assert reason in refusal


def test_refusal_accepts_address_objects(policy: EgressPolicy) -> None:
    assert policy.refusal(ipaddress.ip_address("10.1.2.3")) == "10.1.2.3 is not a public address"


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700::1", "2001:4860:4860::8888"])
def test_public_address_is_allowed(policy: EgressPolicy, address: str) -> None:
    assert policy.refusal(address) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_allowed_networks_are_let_through(loopback_policy: EgressPolicy, address: str) -> None:
    assert loopback_policy.refusal(address) is None


@pytest.mark.parametrize("address", ["10.0.0.1", "169.254.169.254", "::ffff:10.0.0.1", "fd00:ec2::254"])
def test_allowing_loopback_still_refuses_everything_else(loopback_policy: EgressPolicy, address: str) -> None:
    assert loopback_policy.refusal(address) is not None


def test_only_a_policy_that_allows_loopback_says_so(policy: EgressPolicy, loopback_policy: EgressPolicy) -> None:
    assert loopback_policy.allows_loopback() is True
    assert policy.allows_loopback() is False
    assert EgressPolicy.from_text("10.0.0.0/8").allows_loopback() is False


def test_from_text_reads_a_comma_separated_list() -> None:
    policy = EgressPolicy.from_text(" 10.0.0.0/8 , ,fd00::/8,")
    assert policy.allowed == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


def test_from_text_of_nothing_allows_nothing() -> None:
    assert EgressPolicy.from_text("").allowed == ()


def test_from_text_takes_a_host_address_as_its_network() -> None:
    assert EgressPolicy.from_text("10.1.2.3/8").refusal("10.200.0.1") is None


@pytest.mark.parametrize("text", ["loopback", "10.0.0.0/33", "127.0.0.0/8,bogus", "::1/129", "300.0.0.0/8"])
def test_from_text_rejects_a_bad_network_naming_it(text: str) -> None:
    bad = next(p for p in text.split(",") if p != "127.0.0.0/8")
    with pytest.raises(ValueError, match="invalid network") as info:
        EgressPolicy.from_text(text)
    assert repr(bad) in str(info.value)


@settings(max_examples=200, deadline=None)
@given(address=st.ip_addresses(v=4, network="10.0.0.0/8") | st.ip_addresses(v=4, network="192.168.0.0/16"))
def test_any_private_ipv4_is_refused_bare_and_mapped(address: ipaddress.IPv4Address) -> None:
    policy = EgressPolicy()
    assert policy.refusal(address) is not None
    assert policy.refusal(f"::ffff:{address}") is not None
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address))
    assert policy.refusal(nat64) is not None


# -- literal_address ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_literal_address_reads_every_notation(host: str, address: str) -> None:
    assert literal_address(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "localhost", "deadbeef", "1.2.3.4.5", "0x", "cafe.example", ""])
def test_literal_address_of_a_dns_name_is_none(host: str) -> None:
    assert literal_address(host) is None


# -- check_callback_url --------------------------------------------------------------------------------


def check(url: object, policy: EgressPolicy | None = None, max_length: int = MAX_URL) -> str:
    return check_callback_url(url, policy or EgressPolicy(), max_length)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/that-thing/run-it",
        "http://example.com/far-far-away",
        "http://example.com:8080/a/b?c=d&e=f#frag",
        "https://api.example.com./hook",
        "http://8.8.8.8/hook",
        "http://[2606:4700::1]:443/hook",
        "HTTPS://EXAMPLE.COM/",
        "https://example.com/path%20with%20spaces",
    ],
)
def test_public_http_url_is_accepted_unchanged(url: str) -> None:
    assert check(url) == url


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "file:///etc/passwd", "javascript:alert(1)", "gopher://example.com/", "ws://example.com/"],
)
def test_url_of_another_scheme_is_rejected(url: str) -> None:
    error = rejected(lambda: check(url))
    assert error.status == 400
    assert error.message == f"callback {url!r} must be an absolute http:// or https:// URL"


@pytest.mark.parametrize("url", ["/that-thing/run-it", "example.com/run-it", "//example.com/run-it", "run-it"])
def test_relative_url_is_rejected(url: str) -> None:
    error = rejected(lambda: check(url))
    assert "must be an absolute http:// or https:// URL" in error.message


@pytest.mark.parametrize("url", ["http://", "http:///path", "https://:443/path", "http://?q=1"])
def test_url_without_a_host_is_rejected(url: str) -> None:
    error = rejected(lambda: check(url))
    assert error.message == f"callback {url!r} has no host"


@pytest.mark.parametrize(
    "url",
    ["http://user:pw@example.com/", "http://user@example.com/", "http://:pw@example.com/", "http://@example.com/"],
)
def test_url_with_credentials_is_rejected(url: str) -> None:
    error = rejected(lambda: check(url))
    assert error.status == 400
    assert "must not carry credentials" in error.message


def test_url_over_the_length_limit_is_rejected() -> None:
    url = "https://example.com/" + "a" * 30
    error = rejected(lambda: check(url, max_length=len(url) - 1))
    assert error.message == f"callback is {len(url)} characters long; the limit is {len(url) - 1}"


def test_url_at_the_length_limit_is_accepted() -> None:
    url = "https://example.com/" + "a" * 30
    assert check(url, max_length=len(url)) == url


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a b",
        "https://example.com/a\tb",
        "https://example.com/\n",
        "https://example.com/\x00",
        "https://example.com/\x7f",
        "https://exämple.com/",
        "https://example.com/café",
        " https://example.com/",
    ],
)
def test_url_with_spaces_control_or_non_ascii_characters_is_rejected(url: str) -> None:
    error = rejected(lambda: check(url))
    assert error.status == 400
    assert "contains spaces, control or non-ASCII characters" in error.message


@pytest.mark.parametrize("url", ["http://example.com:99999/", "http://example.com:-1/", "http://example.com:port/"])
def test_url_with_a_bad_port_is_rejected(url: str) -> None:
    error = rejected(lambda: check(url))
    assert error.message.startswith(f"callback {url!r} is not a valid URL")


def test_url_with_port_zero_is_rejected() -> None:
    error = rejected(lambda: check("http://example.com:0/"))
    assert error.message == "callback 'http://example.com:0/' has port 0"


@pytest.mark.parametrize("value", [None, 42, ["https://example.com/"], {"url": "https://example.com/"}])
def test_callback_that_is_not_a_string_is_rejected(value: object) -> None:
    error = rejected(lambda: check(value))
    assert error.message == "callback must be a string holding an absolute http(s) URL"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1/",
        "http://0x7f.1/",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://017700000001/",
        "http://0177.0.0.1:8080/",
        "http://127.0.0.1./",
        "http://0/",
        "http://0.0.0.0:6777/",
        "http://10.0.0.1/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[fe80::1%25eth0]/",
        "http://[fd00:ec2::254]/",
        "http://[2002:7f00:1::]/",
        "http://[64:ff9b::a00:1]/",
    ],
)
def test_ip_literal_of_a_non_public_address_is_refused_in_every_notation(url: str) -> None:
    error = rejected(lambda: check(url))
    assert error.status == 400
    assert error.message.startswith(f"callback {url!r} is refused: ")
    assert error.message.endswith("callbacks may only reach public addresses")


@pytest.mark.parametrize(
    "url", ["http://localhost/", "http://LOCALHOST:6777/", "http://localhost./", "http://app.localhost/x"]
)
def test_localhost_is_refused_by_default(url: str) -> None:
    error = rejected(lambda: check(url))
    assert error.message == (
        f"callback {url!r} is refused: localhost is a loopback name; callbacks may only reach public addresses"
    )


@pytest.mark.parametrize(
    "url", ["http://localhost:6777/x", "http://app.localhost/", "http://127.0.0.1:8000/hook", "http://[::1]:9/"]
)
def test_loopback_urls_are_accepted_when_loopback_is_allowed(loopback_policy: EgressPolicy, url: str) -> None:
    assert check(url, loopback_policy) == url


def test_allowing_loopback_does_not_allow_metadata(loopback_policy: EgressPolicy) -> None:
    error = rejected(lambda: check("http://169.254.169.254/", loopback_policy))
    assert "link-local" in error.message


@pytest.mark.parametrize("url", ["http://notlocalhost/", "http://localhost.example.com/", "http://mylocalhost.com/"])
def test_names_that_merely_contain_localhost_are_accepted(url: str) -> None:
    assert check(url) == url
