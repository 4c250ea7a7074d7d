#!/usr/bin/env python3
'''
Time N sequential getCellIden() round trips on one telepath proxy.

    bench_calls.py URL N [CERTDIR]

CERTDIR is the certdir for an ssl:// URL (Synapse's openurl(url, certdir=...)).
Prints one JSON object: {"calls": N, "secs": ..., "calls_per_sec": ...}.
One untimed call warms the proxy up first.
'''
import sys
import json
import time
import asyncio


async def bench(url, count, certdir=None):
    import synapse.telepath as s_telepath

    conn = {}
    if certdir is not None:
        import synapse.lib.certdir as s_certdir
        conn['certdir'] = s_certdir.CertDir(path=(certdir,))

    async with await s_telepath.openurl(url, **conn) as prox:
        await prox.getCellIden()
        t0 = time.perf_counter()
        for _ in range(count):
            await prox.getCellIden()
        secs = time.perf_counter() - t0
    return {'calls': count, 'secs': secs, 'calls_per_sec': (count / secs) if secs > 0 else None}


def main(argv):
    if len(argv) not in (2, 3):
        sys.stderr.write('usage: bench_calls.py URL N [CERTDIR]\n')
        return 1
    certdir = argv[2] if len(argv) == 3 else None
    print(json.dumps(asyncio.run(bench(argv[0], int(argv[1]), certdir))))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
