"""The physical limit of forwarding here: a bare aiohttp server that sends each request's body to
the upstream with one pooled aiohttp client and answers with what came back (a stream passed on
piece by piece as it arrives). No framework, no auth, no accounting: what any gateway in Python
adds is measured against this.

    python bench/forwarder.py --port 9200 --upstream http://127.0.0.1:9100
"""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web


def app(upstream: str) -> web.Application:
    target = upstream.rstrip("/") + "/v1/chat/completions"

    async def start(application: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0)  # no cap on pooled connections
        application["session"] = aiohttp.ClientSession(connector=connector)

    async def stop(application: web.Application) -> None:
        await application["session"].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        session: aiohttp.ClientSession = request.app["session"]
        async with session.post(
            target, data=body, headers={"Content-Type": "application/json"}
        ) as reply:
            if reply.content_type != "text/event-stream":
                return web.Response(
                    body=await reply.read(), status=reply.status, content_type="application/json"
                )
            # A stream: each piece passed on as it arrives.
            response = web.StreamResponse(
                status=reply.status, headers={"Content-Type": "text/event-stream"}
            )
            await response.prepare(request)
            async for piece in reply.content.iter_any():
                await response.write(piece)
            await response.write_eof()
            return response

    application = web.Application()
    application.on_startup.append(start)
    application.on_cleanup.append(stop)
    application.router.add_post("/{tail:.*}", forward)
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    web.run_app(
        app(args.upstream), host="127.0.0.1", port=args.port, print=None, access_log=None,
        backlog=4096,
    )  # fmt: skip


if __name__ == "__main__":
    main()
