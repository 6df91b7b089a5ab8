"""The contract's test vectors: signatures and registration fingerprints, byte for byte."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from supervit.auth import ServiceEntry, SharedSecret, build_payload, fingerprint_input, registration_fingerprint, sign
from supervit.auth._payloads import Action
from supervit.protocol import supervisor_pb2
from tests.conftest import VECTORS

CREDENTIALS = VECTORS["credentials"]
FINGERPRINTS = VECTORS["registration_fingerprints"]


@pytest.mark.parametrize("vector", CREDENTIALS, ids=lambda v: v["payload"])
def test_signature_vectors(vector: dict[str, Any]) -> None:
    """sign() reproduces every credential vector exactly."""
    secret = SharedSecret.from_hex(vector["secret_hex"])
    assert sign(secret, vector["timestamp"], vector["nonce"], vector["payload"]) == vector["signature"]


@pytest.mark.parametrize("vector", CREDENTIALS, ids=lambda v: v["payload"])
def test_payload_builders_produce_vector_payloads(vector: dict[str, Any]) -> None:
    """Each vector payload is what build_payload makes from its parts."""
    action, _, rest = vector["payload"].partition(":")
    act = Action(action)
    parts = rest.split(":", 2)
    if act.needs_config_type:
        built = build_payload(act, parts[0], subject=parts[2], config_type=int(parts[1]))
    elif act.needs_subject:
        built = build_payload(act, parts[0], subject=parts[1])
    else:
        built = build_payload(act, parts[0])
    assert built == vector["payload"]


def _request(v: dict[str, Any]) -> supervisor_pb2.RegisterNodeRequest:
    req = supervisor_pb2.RegisterNodeRequest(
        node_id=v["node_id"], agent_addr=v["agent_addr"], location_tag=v["location_tag"], service_tags=v["service_tags"]
    )
    if v["location"] is not None:
        req.location = v["location"]
    if v["power_reserve_level_init"] is not None:
        req.power_reserve_level_init = v["power_reserve_level_init"]
    for s in v["services"]:
        adv = req.services.add(
            name=s["name"], type=s["type"], domain_name=s["domain_name"], port_info=s["port_info"], status=s["status"]
        )
        if s["url"] is not None:
            adv.url = s["url"]
        adv.tags.extend(s["tags"])
    return req


@pytest.mark.parametrize("vector", FINGERPRINTS, ids=lambda v: v["node_id"])
def test_fingerprint_vectors(vector: dict[str, Any]) -> None:
    """Fingerprint input, hash and signed payload match the vectors."""
    entries = [
        ServiceEntry(s["name"], s["type"], s["domain_name"], s["port_info"], s["status"], s["url"], s["tags"])
        for s in vector["services"]
    ]
    text = fingerprint_input(
        vector["node_id"],
        vector["agent_addr"],
        vector["location_tag"],
        vector["location"],
        vector["power_reserve_level_init"],
        vector["service_tags"],
        entries,
    )
    assert text == vector["fingerprint_input"]
    assert hashlib.sha256(text.encode()).hexdigest() == vector["fingerprint_sha256_hex"]
    req = _request(vector)
    assert registration_fingerprint(req) == vector["fingerprint_sha256_hex"]
    if "signed_payload" in vector:
        assert (
            build_payload(Action.REGISTER, vector["node_id"], registration_fingerprint(req)) == vector["signed_payload"]
        )


def test_fingerprint_sorts_by_code_point() -> None:
    """Upper case sorts before lower case and non-ASCII after ASCII (byte order of UTF-8)."""
    text = fingerprint_input("n", "a:1", "t", None, None, ["é", "b", "B", "a"], [])
    assert text == "n|a:1|t||0|B,a,b,é|"


@pytest.mark.parametrize("key_bytes", [32, 64, 65, 200])
@pytest.mark.parametrize("message_bytes", [0, 1, 63, 64, 65, 180, 5000])
def test_shared_secret_mac_is_hmac_sha256(key_bytes: int, message_bytes: int) -> None:
    """The precomputed-pad MAC is HMAC-SHA256 byte for byte, for short, block-sized and long keys."""
    import hmac
    import os

    key, message = os.urandom(key_bytes), os.urandom(message_bytes)
    secret = SharedSecret.from_bytes(key)
    assert secret.mac(message) == hmac.digest(key, message, hashlib.sha256)
    assert secret.mac(message) == secret.mac(message)  # the keyed states are copied, never consumed


def test_request_payload_matches_build_payload_for_every_rpc() -> None:
    """request_payload's precompiled formats say exactly what build_payload says, for all 12 RPCs."""
    from supervit.auth import request_payload
    from supervit.auth._payloads import _PAYLOAD_RULES

    assert len(_PAYLOAD_RULES) == 12
    for cls, (own_id, action, subject) in _PAYLOAD_RULES.items():
        request = cls()
        for field, value in (
            ("node_id", "nöde-7"),
            ("realm_id", 4_294_967_295),
            ("config_key", "key:with:colons"),
            ("config_type", 2),
            ("timestamp", 1_700_000_123),
            ("agent_addr", "127.0.0.1:9"),
        ):
            if field in cls.DESCRIPTOR.fields_by_name:
                setattr(request, field, value)
        node_id = "nöde-7" if own_id else "receiver-1"
        expected = build_payload(
            action,
            node_id,
            None if subject is None else subject(request),  # type: ignore[arg-type]
            request.config_type if action.needs_config_type else None,
        )
        assert request_payload(request, None if own_id else node_id) == expected, cls.__name__
