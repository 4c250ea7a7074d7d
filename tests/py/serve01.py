"""Serve a Synapse 0.1.x cortex directory on loopback for sync-200 tests.

Usage: serve01.py DIR PORT

Opens the cortex with Synapse 0.1.x's own code and listens for telepath on
tcp://127.0.0.1:PORT/ only. Unlike `python -m synapse.servers.cortex` it opens
no HTTPS port (0.1.x binds that on every address). Prints "ready" once it
listens and runs until SIGTERM or SIGINT.
"""
import asyncio
import signal
import sys

import synapse.cortex as s_cortex


async def serve(dirn, port):
    core = await s_cortex.Cortex.anit(dirn)
    await core.dmon.listen(f'tcp://127.0.0.1:{port}/')
    print('ready', flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    await core.fini()


if __name__ == '__main__':
    asyncio.run(serve(sys.argv[1], int(sys.argv[2])))
