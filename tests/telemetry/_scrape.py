"""Scraping a daemon's metrics endpoint over real HTTP (urllib in a worker thread)."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: str


def _get(url: str, accept: str | None, method: str) -> Response:
    request = urllib.request.Request(url, method=method, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return Response(answer.status, answer.headers.get("Content-Type", ""), answer.read().decode())
    except urllib.error.HTTPError as error:  # 4xx/5xx still carry a body
        with error:
            return Response(error.code, error.headers.get("Content-Type", ""), error.read().decode())


async def http_get(address: str, path: str, *, accept: str | None = None, method: str = "GET") -> Response:
    """GET (or ``method``) ``http://address/path``; any status is returned, not raised."""
    return await asyncio.to_thread(_get, f"http://{address}{path}", accept, method)


class Scrape:
    """One parsed exposition (prometheus-client's own parser)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.family_list: list[Metric] = list(text_string_to_metric_families(text))
        self.families: dict[str, Metric] = {f.name: f for f in self.family_list}
        """By name (the parser may split one family in several: iterate family_list for samples)."""

    def value(self, sample: str, **labels: str) -> float:
        """The value of ``sample`` (full sample name, e.g. ``x_total``) with exactly these labels; 0 if absent."""
        for family in self.family_list:
            for s in family.samples:
                if s.name == sample and s.labels == labels:
                    return float(s.value)
        return 0.0

    def sum(self, sample: str, **labels: str) -> float:
        """Sum of ``sample`` over every series whose labels include ``labels``."""
        return sum(
            float(s.value)
            for family in self.family_list
            for s in family.samples
            if s.name == sample and labels.items() <= s.labels.items()
        )


async def scrape(address: str) -> Scrape:
    response = await http_get(address, "/metrics")
    assert response.status == 200, response
    assert response.content_type.startswith("text/plain"), response.content_type
    return Scrape(response.body)
