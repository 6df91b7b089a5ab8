"""Verification order, tamper resistance and the clock window."""

from __future__ import annotations

import pytest

from supervit import _exceptions as exc
from supervit.auth import (
    NONCE_TTL_EXTRA_SECS,
    CredentialVerifier,
    MemoryNonceStorage,
    SharedSecret,
    Signer,
    build_payload,
    request_payload,
)
from supervit.auth._payloads import Action
from supervit.protocol import common_pb2, supervised_pb2, supervisor_pb2
from tests.conftest import SECRET_HEX, FakeClock


def make_verifier(secret: SharedSecret, clock: FakeClock, window: int = 300) -> CredentialVerifier:
    return CredentialVerifier(secret, MemoryNonceStorage(clock=clock), window, clock=clock)


async def test_accepts_valid_then_refuses_replay(secret: SharedSecret, clock: FakeClock) -> None:
    """A valid credential passes once; the same credential again is a replay."""
    verifier = make_verifier(secret, clock)
    cred = Signer(secret, clock=clock).credential("health_check:n1")
    await verifier.verify(cred, "health_check:n1")
    with pytest.raises(exc.NonceReusedError, match="nonce already used"):
        await verifier.verify(cred, "health_check:n1")


@pytest.mark.parametrize("offset", [-301, 301, -10_000, 10_000])
async def test_timestamp_outside_window(secret: SharedSecret, clock: FakeClock, offset: int) -> None:
    """Stale and future timestamps just past the window are refused before anything else."""
    verifier = make_verifier(secret, clock)
    cred = Signer(secret, clock=clock).credential("x", timestamp=int(clock.now) + offset)
    with pytest.raises(exc.TimestampOutOfRangeError, match="timestamp out of range"):
        await verifier.verify(cred, "x")


@pytest.mark.parametrize("offset", [-300, 300, -299, 299, 0])
async def test_timestamp_inside_window(secret: SharedSecret, clock: FakeClock, offset: int) -> None:
    """Timestamps at the window edge (inclusive) are accepted."""
    verifier = make_verifier(secret, clock)
    cred = Signer(secret, clock=clock).credential("x", timestamp=int(clock.now) + offset)
    await verifier.verify(cred, "x")


@pytest.mark.parametrize(("configured", "effective"), [(0, 300), (60, 60), (900, 900)])
async def test_window_configuration(secret: SharedSecret, clock: FakeClock, configured: int, effective: int) -> None:
    """max_clock_skew_secs sets the window; 0 means 300."""
    verifier = make_verifier(secret, clock, configured)
    assert verifier.window == effective
    await verifier.verify(Signer(secret, clock=clock).credential("x", timestamp=int(clock.now) - effective), "x")
    with pytest.raises(exc.TimestampOutOfRangeError):
        await verifier.verify(
            Signer(secret, clock=clock).credential("x", timestamp=int(clock.now) - effective - 1), "x"
        )


async def test_window_checked_before_signature(
    secret: SharedSecret, other_secret: SharedSecret, clock: FakeClock
) -> None:
    """A stale credential with a wrong signature reports the time problem (contract order)."""
    verifier = make_verifier(secret, clock)
    cred = Signer(other_secret, clock=clock).credential("x", timestamp=int(clock.now) - 1000)
    with pytest.raises(exc.TimestampOutOfRangeError):
        await verifier.verify(cred, "x")


async def test_wrong_secret(secret: SharedSecret, other_secret: SharedSecret, clock: FakeClock) -> None:
    """A credential signed with another key is refused and consumes no nonce."""
    storage = MemoryNonceStorage(clock=clock)
    verifier = CredentialVerifier(secret, storage, clock=clock)
    cred = Signer(other_secret, clock=clock).credential("x")
    with pytest.raises(exc.InvalidSignatureError, match="invalid signature"):
        await verifier.verify(cred, "x")
    assert len(storage) == 0
    # The genuine holder can still use that nonce.
    await verifier.verify(Signer(secret, clock=clock).credential("x", nonce=cred.nonce), "x")


@pytest.mark.parametrize("field", ["timestamp", "nonce", "signature"])
async def test_tampered_credential_fields(secret: SharedSecret, clock: FakeClock, field: str) -> None:
    """Changing any credential field breaks the signature."""
    verifier = make_verifier(secret, clock)
    cred = Signer(secret, clock=clock).credential("x")
    if field == "timestamp":
        cred.timestamp += 1
    elif field == "nonce":
        cred.nonce = cred.nonce[:-1] + ("0" if cred.nonce[-1] != "0" else "1")
    else:
        cred.signature = "A" + cred.signature[1:] if cred.signature[0] != "A" else "B" + cred.signature[1:]
    with pytest.raises(exc.InvalidSignatureError):
        await verifier.verify(cred, "x")


async def test_valid_signature_with_whitespace_or_bad_padding_is_refused(
    secret: SharedSecret, clock: FakeClock
) -> None:
    """Strict base64: a correct HMAC wrapped in whitespace or mis-padded is still refused."""
    verifier = make_verifier(secret, clock)
    good = Signer(secret, clock=clock).credential("x")
    for mangled in (good.signature[:10] + "\n" + good.signature[10:], " " + good.signature, good.signature.rstrip("=")):
        cred = common_pb2.NonceCredential(timestamp=good.timestamp, nonce=good.nonce, signature=mangled)
        with pytest.raises(exc.InvalidSignatureError):
            await verifier.verify(cred, "x")
    await verifier.verify(good, "x")  # the untouched one still passes


@pytest.mark.parametrize("signature", ["", "not base64!!", "é", "AAAA"])
async def test_garbage_signatures(secret: SharedSecret, clock: FakeClock, signature: str) -> None:
    """Undecodable or short signatures are plain signature failures, not crashes."""
    verifier = make_verifier(secret, clock)
    cred = common_pb2.NonceCredential(timestamp=int(clock.now), nonce="n", signature=signature)
    with pytest.raises(exc.InvalidSignatureError):
        await verifier.verify(cred, "x")


def _tampered_requests() -> list[tuple[str, object, object]]:
    """(label, original request, tampered copy) for every payload-bearing field."""
    cases: list[tuple[str, object, object]] = []

    def case(label: str, original: object, mutate: object) -> None:
        copy = type(original)()  # type: ignore[operator]
        copy.CopyFrom(original)  # type: ignore[attr-defined]
        mutate(copy)  # type: ignore[operator]
        cases.append((label, original, copy))

    upd = supervised_pb2.UpdateConfigRequest(config_type=3, config_key="log.level", config_value="info")
    case("update_config.type", upd, lambda r: setattr(r, "config_type", 99))
    case("update_config.key", upd, lambda r: setattr(r, "config_key", "log.levels"))
    get = supervised_pb2.GetConfigRequest(config_type=99, config_key="k")
    case("get_config.key", get, lambda r: setattr(r, "config_key", "k2"))
    for cls in (
        supervised_pb2.CreateRealmRequest,
        supervised_pb2.GetRealmRequest,
        supervised_pb2.UpdateRealmRequest,
        supervised_pb2.DeleteRealmRequest,
    ):
        case(f"{cls.__name__}.realm_id", cls(realm_id=42), lambda r: setattr(r, "realm_id", 43))
    rep = supervisor_pb2.ReportRequest(node_id="n1", timestamp=100)
    case("report.node_id", rep, lambda r: setattr(r, "node_id", "n2"))
    case("report.timestamp", rep, lambda r: setattr(r, "timestamp", 101))
    hc = supervisor_pb2.HealthCheckRequest(node_id="n1")
    case("health.node_id", hc, lambda r: setattr(r, "node_id", "n2"))
    reg = supervisor_pb2.RegisterNodeRequest(node_id="n1", agent_addr="127.0.0.1:1", location_tag="t")
    reg.services.add(name="s", type=2, domain_name="d", port_info="1", status=1, tags=["a"])
    case("register.agent_addr", reg, lambda r: setattr(r, "agent_addr", "127.0.0.1:2"))
    case("register.location", reg, lambda r: setattr(r, "location", "x"))
    case("register.power", reg, lambda r: setattr(r, "power_reserve_level_init", 4))
    case("register.tags", reg, lambda r: r.service_tags.append("t"))
    case("register.service_status", reg, lambda r: setattr(r.services[0], "status", 2))
    case("register.service_tag", reg, lambda r: r.services[0].tags.append("a"))
    return cases


@pytest.mark.parametrize(
    ("label", "original", "tampered"), _tampered_requests(), ids=lambda x: x if isinstance(x, str) else ""
)
async def test_tampered_request_fields(
    secret: SharedSecret, clock: FakeClock, label: str, original: object, tampered: object
) -> None:
    """A credential signed for one request does not authorise a request differing in any signed field."""
    verifier = make_verifier(secret, clock)
    cred = Signer(secret, clock=clock).credential(request_payload(original, "node-1"))  # type: ignore[arg-type]
    assert request_payload(tampered, "node-1") != request_payload(original, "node-1")  # type: ignore[arg-type]
    with pytest.raises(exc.InvalidSignatureError):
        await verifier.verify(cred, request_payload(tampered, "node-1"))  # type: ignore[arg-type]
    await verifier.verify(cred, request_payload(original, "node-1"))  # type: ignore[arg-type]


async def test_node_id_is_part_of_supervised_payloads(secret: SharedSecret, clock: FakeClock) -> None:
    """A credential for node-1 is refused by node-2."""
    req = supervised_pb2.GetRealmRequest(realm_id=1)
    cred = Signer(secret, clock=clock).credential(request_payload(req, "node-1"))
    with pytest.raises(exc.InvalidSignatureError):
        await make_verifier(secret, clock).verify(cred, request_payload(req, "node-2"))


async def test_rotation_accepts_either_secret(
    secret: SharedSecret, other_secret: SharedSecret, clock: FakeClock
) -> None:
    """With two valid secrets, credentials under either are accepted and the match is reported."""
    verifier = CredentialVerifier([secret, other_secret], MemoryNonceStorage(clock=clock), clock=clock)
    assert await verifier.verify(Signer(secret, clock=clock).credential("x"), "x") == secret
    assert await verifier.verify(Signer(other_secret, clock=clock).credential("x"), "x") == other_secret


def test_payload_table() -> None:
    """Every action's payload shape, including node_info (not get_node_info)."""
    assert build_payload(Action.NODE_INFO, "n") == "node_info:n"
    assert build_payload(Action.SHUTDOWN, "n") == "shutdown:n"
    assert build_payload(Action.LIST_REALMS, "n") == "list_realms:n"
    assert build_payload(Action.GET_CONFIG, "n", "k", 3) == "get_config:n:3:k"
    assert build_payload(Action.DELETE_REALM, "n", 7) == "delete_realm:n:7"
    with pytest.raises(ValueError, match="subject"):
        build_payload(Action.GET_REALM, "n")
    with pytest.raises(ValueError, match="config type"):
        build_payload(Action.GET_CONFIG, "n", "k")
    req = supervised_pb2.ShutdownRequest(graceful=True)
    assert request_payload(req, "n") == "shutdown:n"
    assert request_payload(supervised_pb2.GetNodeInfoRequest(), "n") == "node_info:n"
    assert request_payload(supervised_pb2.ListRealmsRequest(page_size=3), "n") == "list_realms:n"


def test_request_payload_is_build_payload_for_every_request_type() -> None:
    """request_payload formats each type's prefix once; the text is build_payload's, type by type."""
    from supervit.auth._payloads import _PAYLOAD_RULES

    fields = {"node_id": "n-é", "timestamp": 1_700_000_123, "realm_id": 42, "config_key": "k:ü", "config_type": 2}
    for cls, (own_id, action, subject) in _PAYLOAD_RULES.items():
        names = {f.name for f in cls.DESCRIPTOR.fields}
        request = cls(**{k: v for k, v in fields.items() if k in names})
        node_id = "n-é" if own_id else "node-9"
        expected = build_payload(
            action,
            node_id,
            None if subject is None else subject(request),  # type: ignore[arg-type]
            2 if action.needs_config_type else None,
        )
        assert request_payload(request, None if own_id else "node-9") == expected, cls.__name__
    with pytest.raises(ValueError, match="receiving node's id"):
        request_payload(supervised_pb2.GetRealmRequest(realm_id=1))
    with pytest.raises(TypeError, match="no payload rule"):
        request_payload(common_pb2.NonceCredential())


def test_secret_parsing_errors_never_show_the_secret() -> None:
    """Bad secrets are refused with a reason naming the field, never echoing the value."""
    for bad, reason in [
        ("", "empty"),
        ("abc", "odd number"),
        ("ab" * 31, "too short"),
        ("zz" + SECRET_HEX[2:], "hex"),
    ]:
        with pytest.raises(exc.ConfigError, match=reason) as info:
            SharedSecret.from_hex(bad, field="supervisor.client.shared_secret")
        assert info.value.key == "supervisor.client.shared_secret"
        if bad:
            assert bad not in str(info.value)
    s = SharedSecret.from_hex(SECRET_HEX.upper())
    assert SECRET_HEX not in repr(s) and SECRET_HEX not in str(s)
    assert s == SharedSecret.from_hex(SECRET_HEX)


async def test_check_without_consume_burns_no_nonce(secret: SharedSecret, clock: FakeClock) -> None:
    """check() is the window and the signature only: the nonce stays usable until consume()."""
    storage = MemoryNonceStorage(clock=clock)
    verifier = CredentialVerifier(secret, storage, clock=clock)
    cred = Signer(secret, clock=clock).credential("x")
    assert verifier.check(cred, "x") == secret
    assert verifier.check(cred, "x") == secret
    assert len(storage) == 0
    await verifier.consume(cred)
    assert len(storage) == 1
    with pytest.raises(exc.NonceReusedError, match="nonce already used"):
        await verifier.consume(cred)
    with pytest.raises(exc.NonceReusedError):
        await verifier.verify(cred, "x")


async def test_check_returns_the_key_that_signed_during_a_rotation(
    secret: SharedSecret, other_secret: SharedSecret, clock: FakeClock
) -> None:
    """With several secrets (the verifier's own or given per call) the one that matched comes back."""
    verifier = CredentialVerifier([secret, other_secret], MemoryNonceStorage(clock=clock), clock=clock)
    assert verifier.check(Signer(other_secret, clock=clock).credential("x"), "x") == other_secret
    assert verifier.check(Signer(secret, clock=clock).credential("x"), "x") == secret
    only_new = CredentialVerifier((), MemoryNonceStorage(clock=clock), clock=clock)
    cred = Signer(secret, clock=clock).credential("x")
    assert only_new.check(cred, "x", secrets=[other_secret, secret]) == secret
    with pytest.raises(exc.InvalidSignatureError):
        only_new.check(cred, "x", secrets=[other_secret])


def test_a_lazy_payload_is_built_only_after_the_window_check(secret: SharedSecret, clock: FakeClock) -> None:
    """A callable payload (the registration fingerprint) costs nothing for a stale credential."""
    verifier = make_verifier(secret, clock)
    built: list[str] = []

    def payload() -> str:
        built.append("x")
        return "x"

    stale = Signer(secret, clock=clock).credential("x", timestamp=int(clock.now) - 301)
    with pytest.raises(exc.TimestampOutOfRangeError):
        verifier.check(stale, payload)
    assert built == []
    assert verifier.check(Signer(secret, clock=clock).credential("x"), payload) == secret
    assert built == ["x"]


def test_nonce_expiry_outlives_the_window_by_the_margin(secret: SharedSecret, clock: FakeClock) -> None:
    """Remembered until the timestamp can no longer pass the window, plus the contract's margin."""
    verifier = make_verifier(secret, clock, 60)
    now = int(clock.now)
    past = Signer(secret, clock=clock).credential("x", timestamp=now - 30)
    future = Signer(secret, clock=clock).credential("x", timestamp=now + 30)
    assert verifier.nonce_expiry(past) == now + 60 + NONCE_TTL_EXTRA_SECS
    assert verifier.nonce_expiry(future) == now + 30 + 60 + NONCE_TTL_EXTRA_SECS
    assert verifier.nonce_expiry(past, now=now + 5) == now + 5 + 60 + NONCE_TTL_EXTRA_SECS
