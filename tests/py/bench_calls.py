#!/usr/bin/env python3
'''
Time N sequential getCellIden() round trips on one telepath proxy.

    bench_calls.py URL N

Prints one JSON object: {"calls": N, "secs": ..., "calls_per_sec": ...}.
One untimed call warms the proxy up first.
'''
import sys
import json
import time
import asyncio


async def bench(url, count):
    import synapse.telepath as s_telepath

    async with await s_telepath.openurl(url) as prox:
        await prox.getCellIden()
        t0 = time.perf_counter()
        for _ in range(count):
            await prox.getCellIden()
        secs = time.perf_counter() - t0
    return {'calls': count, 'secs': secs, 'calls_per_sec': (count / secs) if secs > 0 else None}


def main(argv):
    if len(argv) != 2:
        sys.stderr.write('usage: bench_calls.py URL N\n')
        return 1
    print(json.dumps(asyncio.run(bench(argv[0], int(argv[1])))))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
