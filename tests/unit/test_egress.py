"""Which addresses a callback may reach, and the callback URL rules."""

from __future__ import annotations

import ipaddress
from typing import Any

import idna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from requests_hardened.ip_filter import EXTRA_BLOCKED_NET_RANGES

from callme.egress import MAX_HOST_NAME, MAX_LABEL, EgressPolicy, check_callback_url, host_problem, literal_address
from callme.errors import CallmeError, InvalidRequest
from tests.conftest import default_limits
from tests.unit.conftest import rejected

MAX_URL = default_limits().max_url_length

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
    assert isinstance(error, InvalidRequest)
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
    assert isinstance(error, InvalidRequest)
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
        "https://example.com/café",
        " https://example.com/",
    ],
)
def test_url_with_spaces_control_or_non_ascii_characters_is_rejected(url: str) -> None:
    error = rejected(lambda: check(url))
    assert isinstance(error, InvalidRequest)
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
        "http://[fd00:ec2::254]/",
        "http://[2002:7f00:1::]/",
        "http://[64:ff9b::a00:1]/",
    ],
)
def test_ip_literal_of_a_non_public_address_is_refused_in_every_notation(url: str) -> None:
    error = rejected(lambda: check(url))
    assert isinstance(error, InvalidRequest)
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


# -- host syntax ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://.../", "empty label"),
        ("http://./", "is empty"),
        ("http://a..b.com/", "empty label"),
        ("http://.example.com/", "empty label"),
        ("http://example.com../", "empty label"),
        ("http://-/", "label '-'"),
        ("http://-a.example.com/", "label '-a'"),
        ("http://a-.example.com/", "label 'a-'"),
        ("http://exa%20mple.com/", "percent-encoded"),
        ("http://%65xample.com/", "percent-encoded"),
        ("http://exa!mple.com/", "label 'exa!mple'"),
        ("http://exa*mple.com/", "label 'exa*mple'"),
        ("http://exa~mple.com/", "label 'exa~mple'"),
        ("http://exa;mple.com/", "label 'exa;mple'"),
        ("http://" + "a" * (MAX_LABEL + 1) + ".com/", "64 characters long; the limit is 63"),
        ("http://" + ".".join(["a" * 63] * 4) + "/", "255 characters long; the limit is 253"),
        ("https://[v7.abc]/", "IPvFuture"),
        ("https://[v1.x]:443/", "IPvFuture"),
        ("http://[fe80::1%25eth0]/", "zone identifier"),
        ("http://[::1]x/", "'x' follows the IP literal"),
        ("http://1.2.3.4.5/", "not an IPv4 address"),
        ("http://256.1.1.1/", "not an IPv4 address"),
        ("http://example.123/", "not an IPv4 address"),
        ("http://example.0x10/", "not an IPv4 address"),
        ("http://xn--abc.example/", "not a valid IDNA A-label"),
        ("http://xn--a.example/", "not a valid IDNA A-label"),
        ("http://xn--ls8h.la/", "not a valid IDNA A-label"),  # an emoji: not valid in IDNA 2008
        ("http://xn--/", "label 'xn--'"),
    ],
)
def test_invalid_host_is_refused_naming_the_problem(url: str, problem: str) -> None:
    error = rejected(lambda: check(url))
    assert isinstance(error, InvalidRequest)
    assert error.message.startswith(f"callback {url!r} has an invalid host: ")
    assert problem in error.message


@pytest.mark.parametrize("netloc", ["[1:2:3:4:5:6:7:8:9]", "[::g]", "[V1.x]:443", "[127.0.0.1]"])
def test_bracketed_literal_that_is_no_ipv6_address_is_a_problem(netloc: str) -> None:
    # (Python 3.13's urlsplit refuses these itself; the check does not depend on it.)
    literal = netloc.partition("]")[0] + "]"
    assert host_problem(netloc) in (
        f"{literal} is not an IPv6 address",
        f"{literal} is an IPvFuture literal, which cannot be called: use an IPv6 address or a name",
    )
    assert isinstance(rejected(lambda: check(f"http://{netloc}/")), InvalidRequest)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com./x",  # a fully qualified name
        "http://a.b-c.d_e.example/",  # underscores are in real DNS names
        "http://ab--cd.example/",  # hyphens in 3rd and 4th place: a valid (not IDNA) DNS name
        "http://r3---sn-4g5e6nsz.googlevideo.com/",
        "http://xn--bcher-kva.example/",  # bücher, as its A-label
        "http://XN--BCHER-KVA.EXAMPLE/",
        "http://1e100.net/",
        "http://" + "a" * MAX_LABEL + ".com/",
        "http://" + ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61]) + "/",  # 253 characters
        "http://" + ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61]) + "./",
        "http://8.8.8.8/",
        "http://134744072/",  # 8.8.8.8 as one number
        "http://[2606:4700::1]:8080/",
        "http://[::ffff:8.8.8.8]/",
        "http://example.com:/",
    ],
)
def test_valid_host_is_accepted(url: str) -> None:
    assert check(url) == url


@pytest.mark.parametrize(
    ("url", "a_labels"),
    [
        ("https://exämple.com/", "xn--exmple-cua.com"),
        ("http://bücher.example/x", "xn--bcher-kva.example"),
        ("http://BÜCHER.example/", "xn--bcher-kva.example"),
        ("http://例え.テスト/", "xn--r8jz45g.xn--zckzah"),
    ],
)
def test_unicode_host_is_refused_naming_its_a_labels(url: str, a_labels: str) -> None:
    # Hosts are stored and sent as ASCII: one form for each name, and no guessing at dispatch.
    error = rejected(lambda: check(url))
    assert isinstance(error, InvalidRequest)
    assert error.message.endswith(f"in ASCII, as its IDNA A-labels: {a_labels!r}")
    assert check(url.replace(url.split("/")[2], a_labels)) == url.replace(url.split("/")[2], a_labels)


def test_unicode_host_that_is_no_valid_idn_is_refused_saying_so() -> None:
    error = rejected(lambda: check("http://💩.la/"))
    assert "is not a valid internationalised domain name" in error.message


_LDH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_EDGE = st.sampled_from(_LDH + "_")
labels = st.one_of(
    _EDGE, st.builds(lambda a, b, c: a + b + c, _EDGE, st.text(alphabet=_LDH + "-_", max_size=61), _EDGE)
)


def _plain_name(name: str) -> bool:
    """Short enough, not ending in a number (an IPv4 address's form), with no A-label."""
    last = name.rpartition(".")[2].lower()
    numeric = last.isdigit() or (last.startswith("0x") and all(c in "0123456789abcdef" for c in last[2:]))
    return len(name) <= MAX_HOST_NAME and not numeric and not any(p.lower().startswith("xn--") for p in name.split("."))


names = st.lists(labels, min_size=1, max_size=4).map(".".join).filter(_plain_name)


@settings(max_examples=300, deadline=None)
@given(name=names, dot=st.booleans())
def test_any_name_of_valid_labels_is_accepted(name: str, dot: bool) -> None:
    host = name + ("." if dot else "")
    assert host_problem(host) is None
    assert check(f"https://{host}/x") == f"https://{host}/x"


@settings(max_examples=300, deadline=None)
@given(
    name=names,
    spoil=st.sampled_from(["leading-hyphen", "trailing-hyphen", "empty", "long", "char"]),
    at=st.integers(0, 3),
    bad=st.sampled_from('!$&\'()*+,;=~%""<>^`{|}'),
)
def test_any_name_with_one_spoilt_label_is_refused(name: str, spoil: str, at: int, bad: str) -> None:
    parts = name.split(".")
    i = at % len(parts)
    parts[i] = {
        "leading-hyphen": "-" + parts[i],
        "trailing-hyphen": parts[i] + "-",
        "empty": "",
        "long": parts[i] + "x" * MAX_LABEL,
        "char": parts[i][:1] + bad + parts[i][1:],
    }[spoil]
    assert host_problem(".".join(parts) + ".com") is not None


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(
        alphabet=st.characters(
            codec="utf-8", exclude_categories=["Cs", "Cc", "Zs", "Zl", "Zp"], exclude_characters="/?#@:[]\\"
        ),
        min_size=1,
        max_size=20,
    )
)
def test_any_host_accepted_encodes_by_idna_or_is_plain_ldh(name: str) -> None:
    # Whatever a client writes as a host, what is accepted is ASCII with valid A-labels; a non-ASCII
    # host is refused naming its A-labels (when it has any), and those are accepted.
    url = f"https://{name}.example/"
    try:
        check(url)
    except CallmeError as error:  # any refusal is fine: what matters is what is accepted
        text = error.message
        if "as its IDNA A-labels: " in text:
            suggested = text.rpartition("A-labels: ")[2].strip("'")
            assert suggested.isascii()
            assert check(f"https://{suggested}/") == f"https://{suggested}/"
        return
    assert name.isascii()
    assert all(idna.encode(label) for label in name.split(".") if label.lower().startswith("xn--"))


@pytest.mark.parametrize("network", EXTRA_BLOCKED_NET_RANGES, ids=str)
def test_what_requests_hardened_refuses_at_the_connection_is_refused_at_registration(network: Any) -> None:
    # Python calls some of these global (192.88.99.0/24, 2001:20::/28 ...): a task registered for
    # them could never be called, so it is refused when it is registered, as for every other range.
    address = network[1]
    reason = EgressPolicy().refusal(address)
    assert reason is not None and reason.startswith(f"{address} "), reason
    url = f"http://[{address}]/" if address.version == 6 else f"http://{address}/"
    assert isinstance(rejected(lambda: check(url)), InvalidRequest)
