"""The generated fast path of the request limits agrees with the checks that word the refusals."""

from __future__ import annotations

import random
from typing import Any

from google.protobuf import descriptor as _descriptor
from google.protobuf import descriptor_pool, message_factory

from supervit.rpc._limits import (
    SUPERVISED_LIMITS,
    SUPERVISOR_LIMITS,
    RequestValidator,
    ServiceLimits,
    _Violation,
    _walk,
)

_FD = _descriptor.FieldDescriptor


def _text(rng: random.Random, limit: int) -> str:
    # Around the limit in characters and in bytes (two- and four-byte characters).
    n = rng.choice([0, 1, limit // 4, limit // 4 + 1, limit // 2, limit - 1, limit, limit + 1])
    alphabet = rng.choice(["a", "aé", "é", "a\U0001f600"])
    return "".join(rng.choice(alphabet) for _ in range(n))


def _fill(rng: random.Random, message: Any, limits: ServiceLimits, depth: int = 0) -> None:
    desc = message.DESCRIPTOR
    for fd in desc.fields:
        key = f"{desc.name}.{fd.name}"
        if rng.random() < 0.3:
            continue
        if fd.type == _FD.TYPE_STRING:
            limit = limits.max_bytes.get(key, limits.default_string_bytes)
            if fd.is_repeated:
                count_limit = limits.max_count.get(key, limits.default_repeated)
                n = rng.choice([0, 1, count_limit, count_limit + 1])
                getattr(message, fd.name).extend(_text(rng, limit) for _ in range(n))
            else:
                setattr(message, fd.name, _text(rng, limit))
        elif fd.type == _FD.TYPE_MESSAGE and depth < 3:
            if fd.is_repeated:
                count_limit = limits.max_count.get(key, limits.default_repeated)
                for _ in range(rng.choice([0, 1, 2, count_limit, count_limit + 1])):
                    _fill(rng, getattr(message, fd.name).add(), limits, depth + 1)
            elif fd.message_type.GetOptions().map_entry is False:
                _fill(rng, getattr(message, fd.name), limits, depth + 1)
        elif fd.type in (_FD.TYPE_UINT64, _FD.TYPE_FIXED64) and not fd.is_repeated:
            setattr(message, fd.name, rng.choice([0, 1, limits.max_uint64, limits.max_uint64 + 1, 2**64 - 1]))


def test_fast_path_passes_exactly_what_the_walk_passes() -> None:
    """For random requests of every supervisor and node RPC, with strings, counts and integers
    around their limits, the generated check passes a request iff the walk finds no violation
    (a request it does not pass is walked, so a refusal's words come from the walk alone)."""
    rng = random.Random(13)
    tried = refused = 0
    for limits in (SUPERVISOR_LIMITS, SUPERVISED_LIMITS):
        service = descriptor_pool.Default().FindServiceByName(limits.service)
        for method in service.methods:
            validator = RequestValidator(method.input_type, limits)
            assert validator._passes is not None
            cls = message_factory.GetMessageClass(method.input_type)
            for _ in range(60):
                request = cls()
                _fill(rng, request, limits)
                try:
                    _walk(validator._checks, request)
                    walk_passes = True
                except _Violation:
                    walk_passes = False
                assert validator._passes(request) is walk_passes, (method.full_name, request)
                tried += 1
                refused += not walk_passes
    assert 0 < refused < tried  # both outcomes were exercised
