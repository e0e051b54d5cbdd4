"""The result cache on a real server: repeats are answered from it, ``no-cache`` and canary traffic
bypass it, and its metrics say so."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx

from models import fraud

TXN = fraud.generate(3, seed=23)[0]


def lookups(url: str, result: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(v) for v in re.findall(rf'ballast_cache_lookups_total\{{[^}}]*result="{result}"[^}}]*\}} (\S+)', text)
    )


def test_repeats_come_from_the_cache_unless_the_caller_says_no_cache(serve: Callable[..., Any]) -> None:
    with serve("services.fraud:Fraud", BALLAST_CACHE_MAX_BYTES="1048576") as url:
        first = httpx.post(f"{url}/score", json=TXN[0], timeout=10).json()
        again = httpx.post(f"{url}/score", json=TXN[0], timeout=10).json()
        assert again["fraud_probability"] == first["fraud_probability"]
        assert again["served_by"] == "fraud-gbt"
        assert (lookups(url, "hit"), lookups(url, "miss")) == (1, 1)
        bypassed = httpx.post(f"{url}/score", json=TXN[0], headers={"Cache-Control": "no-cache"}, timeout=10)
        assert bypassed.status_code == 200
        assert (lookups(url, "hit"), lookups(url, "miss")) == (1, 1)  # neither read nor filled
        text = httpx.get(f"{url}/metrics", timeout=10).text
        assert re.search(r'ballast_cache_entries\{pipeline="fraud",version="\w+"\} 1\.0', text), text[-2000:]
