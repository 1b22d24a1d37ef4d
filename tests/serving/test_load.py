"""A bounded load test on loopback: concurrent clients, every response 200 and well-formed (no timing)."""

from __future__ import annotations

import asyncio
import json

REQUESTS = 600
CONCURRENCY = 32


async def worker(port: int, count: int, statuses: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i in range(count):
            body = json.dumps({"periods": 1 + (i % 104), "conf": round(0.5 + (i % 49) / 100, 2)}).encode()
            writer.write(b"POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                         b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            document = json.loads(await reader.readexactly(length))
            assert status != 200 or len(document["forecasts"]) == 1 + (i % 104)
            statuses.append(status)
    finally:
        writer.close()


def test_bounded_load_has_zero_errors(open_server):
    statuses: list[int] = []

    async def main() -> None:
        per_worker = REQUESTS // CONCURRENCY
        await asyncio.wait_for(
            asyncio.gather(*(worker(open_server.port, per_worker, statuses) for _ in range(CONCURRENCY))), timeout=120)

    asyncio.run(main())
    assert len(statuses) == (REQUESTS // CONCURRENCY) * CONCURRENCY
    assert set(statuses) == {200}
    assert open_server.process.poll() is None
