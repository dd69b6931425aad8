"""Origination URI parsing: every accepted form and every refusal."""
import pytest

from sipedge.errors import URIError
from sipedge.twilio.uri import OriginationURI, parse_uri


@pytest.mark.parametrize("text,host,kind,port,transport,edge", [
    ("sip:sbc1.example.com", "sbc1.example.com", "name", 5060, "udp", None),
    ("SIP:SBC1.Example.COM", "sbc1.example.com", "name", 5060, "udp", None),
    ("sip:sbc1.example.com:5080", "sbc1.example.com", "name", 5080, "udp", None),
    ("sip:sbc1.example.com;transport=tcp", "sbc1.example.com", "name", 5060, "tcp", None),
    ("sip:sbc1.example.com;transport=TLS", "sbc1.example.com", "name", 5061, "tls", None),
    ("sip:sbc1.example.com:5071;transport=tls", "sbc1.example.com", "name", 5071, "tls", None),
    ("sips:sbc1.example.com", "sbc1.example.com", "name", 5061, "tls", None),
    ("sips:sbc1.example.com;transport=tcp", "sbc1.example.com", "name", 5061, "tls", None),
    ("sips:sbc1.example.com;transport=tls", "sbc1.example.com", "name", 5061, "tls", None),
    ("sip:192.0.2.10", "192.0.2.10", "ipv4", 5060, "udp", None),
    ("sip:192.0.2.10:5062;transport=udp", "192.0.2.10", "ipv4", 5062, "udp", None),
    ("sip:[2001:db8::1]", "2001:db8::1", "ipv6", 5060, "udp", None),
    ("sip:[2001:DB8:0::1]:5070;transport=tcp", "2001:db8::1", "ipv6", 5070, "tcp", None),
    ("sips:[2001:db8::5]", "2001:db8::5", "ipv6", 5061, "tls", None),
    ("sip:sbc1.example.com;edge=dublin", "sbc1.example.com", "name", 5060, "udp", "dublin"),
    ("sip:sbc1.example.com;edge=Frankfurt", "sbc1.example.com", "name", 5060, "udp", "frankfurt"),
    ("sip:sbc1.example.com;edge=ie1", "sbc1.example.com", "name", 5060, "udp", "dublin"),
    ("sip:sbc1.example.com;region=ie1", "sbc1.example.com", "name", 5060, "udp", "dublin"),
    ("sip:sbc1.example.com;region=de1;edge=frankfurt", "sbc1.example.com", "name", 5060, "udp", "frankfurt"),
    ("sip:sbc1.example.com;edge=london-ix", "sbc1.example.com", "name", 5060, "udp", "london-ix"),
    ("sip:sbc1.example.com;region=us1-ix", "sbc1.example.com", "name", 5060, "udp", "ashburn-ix"),
    ("sip:sbc;transport=tls;edge=sydney", "sbc", "name", 5061, "tls", "sydney"),
    ("sip:+15551234567@sbc1.example.com", "sbc1.example.com", "name", 5060, "udp", None),
    ("  sip:sbc1.example.com  ", "sbc1.example.com", "name", 5060, "udp", None),
    ("sip:a-b.c-d.example", "a-b.c-d.example", "name", 5060, "udp", None),
])
def test_valid(text, host, kind, port, transport, edge):
    u = parse_uri(text)
    assert (u.host, u.host_kind, u.port, u.transport, u.edge) == (host, kind, port, transport, edge)
    assert u.tls == (transport == "tls")
    # canonical text parses back to the same thing
    assert parse_uri(str(u)) == u


def test_canonical_text():
    assert str(parse_uri("SIP:SBC.example.com:5080;TRANSPORT=TCP;region=ie1")) == \
        "sip:sbc.example.com:5080;transport=tcp;edge=dublin"
    assert str(parse_uri("sips:[2001:db8:0::1];transport=tcp")) == "sips:[2001:db8::1];transport=tcp"
    assert str(parse_uri("sip:u@h.example")) == "sip:u@h.example"
    assert parse_uri("sip:h.example").port_given is False
    assert parse_uri("sip:h.example:5060").port_given is True


def test_user_part_kept():
    u = parse_uri("sip:+15551234567@sbc1.example.com")
    assert u.user == "+15551234567"


def test_passthrough_and_type():
    u = parse_uri("sip:h.example")
    assert parse_uri(u) is u
    assert isinstance(u, OriginationURI)
    with pytest.raises(URIError, match="string"):
        parse_uri(5060)


@pytest.mark.parametrize("text,words", [
    ("", ["empty"]),
    ("   ", ["empty"]),
    ("http://sbc.example.com", ["scheme", "sip:"]),
    ("tel:+15551234567", ["scheme"]),
    ("sbc.example.com", ["scheme"]),
    ("sip://sbc.example.com", ["'//'"]),
    ("sip:", ["no host"]),
    ("sip::5060", ["no host"]),
    ("sip:sbc.example.com:", ["port ''"]),
    ("sip:sbc.example.com:0", ["port '0'", "1-65535"]),
    ("sip:sbc.example.com:65536", ["port '65536'"]),
    ("sip:sbc.example.com:50a", ["port '50a'"]),
    ("sip:sbc.example.com:123456", ["port"]),
    ("sip:sbc example.com", ["white space"]),
    ("sip:sbc.example.com;transport=ws", ["transport 'ws'", "udp, tcp or tls"]),
    ("sip:sbc.example.com;transport=sctp", ["transport 'sctp'"]),
    ("sip:sbc.example.com;transport=", ["no value"]),
    ("sip:sbc.example.com;transport", ["no value"]),
    ("sips:sbc.example.com;transport=udp", ["sips:", "udp"]),
    ("sip:sbc.example.com;edge=dubiln", ["unknown Twilio edge", "dubiln", "dublin"]),
    ("sip:sbc.example.com;edge=", ["no value"]),
    ("sip:sbc.example.com;region=xx9", ["unknown Twilio edge", "region='xx9'"]),
    ("sip:sbc.example.com;edge=roaming", ["roaming", "Elastic SIP Trunking"]),
    ("sip:sbc.example.com;region=gll", ["roaming"]),
    ("sip:sbc.example.com;edge=dublin;region=de1", ["disagree"]),
    ("sip:sbc.example.com;edge=dublin;edge=dublin", ["twice"]),
    ("sip:sbc.example.com;lr", ["unsupported parameter ;lr", ";edge="]),
    ("sip:sbc.example.com;maddr=192.0.2.1", ["unsupported parameter"]),
    ("sip:sbc.example.com;", ["empty parameter"]),
    ("sip:sbc.example.com;;edge=dublin", ["empty parameter"]),
    ("sip:sbc.example.com?Subject=x", ["headers"]),
    ("sip:2001:db8::1", ["without brackets", "[2001:db8::1]"]),
    ("sip:[2001:db8::1", ["closing ']'"]),
    ("sip:[192.0.2.1]", ["not an IPv6"]),
    ("sip:[2001:db8::1]5060", ["after the IPv6"]),
    ("sip:[fe80::1%eth0]", ["zone"]),
    ("sip:999.0.2.1", ["not a valid IPv4"]),
    ("sip:192.0.2", ["not a valid IPv4"]),
    ("sip:-sbc.example.com", ["invalid label '-sbc'"]),
    ("sip:sbc-.example.com", ["invalid label"]),
    ("sip:sbc..example.com", ["invalid label ''"]),
    ("sip:sbc_1.example.com", ["invalid label"]),
    ("sip:" + "a" * 64 + ".example.com", ["invalid label"]),
    ("sip:" + ".".join(["a" * 60] * 5), ["253"]),
    ("sip:host.123", ["numeric label"]),
    ("sip:@sbc.example.com", ["user part"]),
    ("sip:us er@sbc.example.com", ["white space"]),
    ("sip:us<er@sbc.example.com", ["user part"]),
])
def test_refused(text, words):
    with pytest.raises(URIError) as e:
        parse_uri(text)
    msg = str(e.value)
    for w in words:
        assert w in msg, (w, msg)
    assert "origination URI" in msg or "empty" in msg


def test_uri_error_is_value_error_with_input_exit_code():
    with pytest.raises(ValueError) as e:
        parse_uri("sip:sbc.example.com;edge=mars")
    assert e.value.exit_code == 3
