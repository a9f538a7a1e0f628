"""A stand-in for an upstream LLM: an OpenAI-compatible `POST /v1/chat/completions` (aiohttp) that
answers after `--delay` seconds, or streams `--chunks` chunks `--interval` seconds apart, each
chunk's content the time it was sent (bench/clients.py streams subtracts it from its arrival),
then a stop chunk, the usage chunk when `stream_options.include_usage` asks, and [DONE].

    python bench/upstream.py --port 9100 --delay 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiohttp import web

ANSWER = {
    "id": "chatcmpl-upstream",
    "object": "chat.completion",
    "created": 0,
    "model": "upstream",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello from upstream!"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6},
}
USAGE = ANSWER["usage"]


def app(delay: float, chunks: int, interval: float) -> web.Application:
    answer = json.dumps(ANSWER).encode()

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        await asyncio.sleep(delay)
        if not body.get("stream"):
            return web.Response(body=answer, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "chatcmpl-upstream", "object": "chat.completion.chunk", "model": "upstream"}
        for index in range(chunks):
            if index:
                await asyncio.sleep(interval)
            now = time.time()
            delta = {"role": "assistant", "content": f"{now:.6f} "}
            chunk = {**base, "created": int(now), "choices": [{"index": 0, "delta": delta}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        stop = {"index": 0, "delta": {}, "finish_reason": "stop"}
        last = [{**base, "created": int(time.time()), "choices": [stop]}]
        if (body.get("stream_options") or {}).get("include_usage"):
            last.append({**base, "created": int(time.time()), "choices": [], "usage": USAGE})
        await response.write(
            b"".join(b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in last)
            + b"data: [DONE]\n\n"
        )
        return response

    application = web.Application()
    application.router.add_post("/v1/chat/completions", completions)
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.5)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.05)
    args = parser.parse_args()
    web.run_app(
        app(args.delay, args.chunks, args.interval),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
