"""Issue 10: listings page instead of outgrowing one response (admin ListNodes, `supervit ctl nodes`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit.protocol import supervisor_pb2
from tests.cli.test_ctl import ADMIN_HEX, clean_env, supervit
from tests.supervisor.conftest import NodeSim, make_config

Started = Callable[..., Any]
Channels = Callable[[str], grpc.aio.Channel]
Admins = Callable[..., Any]


def _big_services() -> list[supervisor_pb2.ServiceAdvertisement]:
    # Every field at its limit: a registration of about 200 KB (the request limit is 256 KB).
    return [
        supervisor_pb2.ServiceAdvertisement(
            name=f"s{i}".ljust(128, "n"),
            type=2,
            domain_name="d" * 256,
            port_info="p" * 128,
            status=1,
            description="x" * 1024,
            url="u" * 512,
            tags=[f"{i}-{t}".ljust(64, "t") for t in range(32)],
        )
        for i in range(48)
    ]


async def test_list_nodes_pages_by_node_id(
    tmp_path: Path, started: Started, channel_to: Channels, admin_to: Admins
) -> None:
    sup = await started(make_config(tmp_path))
    channel = channel_to(sup.address)
    await asyncio.gather(*(NodeSim(channel, f"n{i}").register() for i in range(5)))
    admin = admin_to(sup.admin_address)
    seen, token, pages = [], "", 0
    while True:
        page = await admin.list_nodes_page(2, token)
        assert page.total_count == 5 and len(page.nodes) <= 2
        seen += [n.node_id for n in page.nodes]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert (seen, pages) == (["n0", "n1", "n2", "n3", "n4"], 3)
    assert [n.node_id for n in (await admin.list_nodes(page_size=2)).nodes] == seen
    whole = await admin.list_nodes_page()
    assert len(whole.nodes) == 5 and whole.next_page_token is None and not whole.message.HasField("next_page_token")
    for bad in ("nope", whole.message.SerializeToString().hex()[:40], "TlAxbjE"):
        with pytest.raises(Exception) as info:
            await admin.list_nodes_page(2, bad)
        assert getattr(info.value, "code", None) == grpc.StatusCode.INVALID_ARGUMENT


async def test_large_registrations_page_instead_of_resource_exhausted(
    tmp_path: Path, started: Started, channel_to: Channels, admin_to: Admins
) -> None:
    """~5 MB of node records used to make ListNodes (and `supervit ctl nodes`) fail RESOURCE_EXHAUSTED."""
    sup = await started(make_config(tmp_path))
    channel = channel_to(sup.address)
    services = _big_services()
    node = NodeSim(channel, "n00")
    assert node.register_request(services=services).ByteSize() > 150_000
    for i in range(26):
        assert (await NodeSim(channel, f"n{i:02d}").register(services=services)).success
    admin = admin_to(sup.admin_address)
    first = await admin.list_nodes_page()
    assert 0 < len(first.nodes) < 26 and first.next_page_token and first.total_count == 26
    assert [n.node_id for n in (await admin.list_nodes()).nodes] == [f"n{i:02d}" for i in range(26)]

    env = clean_env(SUPERVIT_ADMIN_ADDR=sup.admin_address or "", SUPERVIT_ADMIN_SECRET=ADMIN_HEX)
    listing = await supervit("ctl", "nodes", env=env)
    assert listing.code == 0, listing.err
    assert sum(1 for line in listing.out.splitlines() if line.startswith("n")) == 26


async def test_list_nodes_reads_the_store_in_chunks_across_page_boundaries(
    tmp_path: Path, started: Started, channel_to: Channels, admin_to: Admins
) -> None:
    """More nodes than one store chunk (500): unpaged and odd-sized pages list each node once, in order."""
    sup = await started(make_config(tmp_path))
    channel = channel_to(sup.address)
    ids = sorted(f"node-{i:04d}" for i in range(1203))
    for start in range(0, len(ids), 200):
        await asyncio.gather(*(NodeSim(channel, node_id).register() for node_id in ids[start : start + 200]))
    admin = admin_to(sup.admin_address)
    whole = await admin.list_nodes_page()
    assert [n.node_id for n in whole.nodes] == ids and whole.total_count == 1203
    assert whole.next_page_token is None and not whole.message.HasField("next_page_token")
    for size in (499, 500, 501, 1202, 1203):
        seen, token = [], ""
        while True:
            page = await admin.list_nodes_page(size, token)
            assert len(page.nodes) <= size
            seen += [n.node_id for n in page.nodes]
            token = page.next_page_token
            if not token:
                break
        assert seen == ids, size
