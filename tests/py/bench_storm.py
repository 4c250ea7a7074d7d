#!/usr/bin/env python3
'''
Storm ingest and lift timings with Synapse's own telepath client (for benches/storm.rs).

    bench_storm.py URL ingest FIRST COUNT BATCH TAG   add COUNT inet:ipv4 nodes from FIRST,
                                                     BATCH rows per storm query (passed as
                                                     the var $rows), each with :asn and #TAG
    bench_storm.py URL lift QUERY                    run QUERY, count its node messages

Prints one JSON object: {"nodes": N, "secs": S}. Any err message fails with exit 2.
'''
import sys
import json
import time
import asyncio

INGEST = 'for ($ip, $asn) in $rows { [ inet:ipv4=$ip :asn=$asn +#$tag ] }'


async def storm(prox, text, opts=None):
    nodes = 0
    async for mesg in prox.storm(text, opts=opts):
        if mesg[0] == 'node':
            nodes += 1
        elif mesg[0] == 'err':
            raise Exception(f'storm error: {mesg[1]}')
    return nodes


async def run(argv):
    import synapse.telepath as s_telepath
    url, mode = argv[0], argv[1]
    async with await s_telepath.openurl(url) as prox:
        if mode == 'ingest':
            first, count, batch, tag = int(argv[2]), int(argv[3]), int(argv[4]), argv[5]
            nodes = 0
            t0 = time.perf_counter()
            for start in range(first, first + count, batch):
                end = min(start + batch, first + count)
                rows = [(ip, ip % 65536) for ip in range(start, end)]
                nodes += await storm(prox, INGEST, opts={'vars': {'rows': rows, 'tag': tag}})
            secs = time.perf_counter() - t0
        elif mode == 'lift':
            t0 = time.perf_counter()
            nodes = await storm(prox, argv[2])
            secs = time.perf_counter() - t0
        else:
            raise ValueError(f'unknown mode {mode}')
    return {'nodes': nodes, 'secs': secs}


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 1
    try:
        print(json.dumps(asyncio.run(run(argv))))
    except Exception as e:
        print(json.dumps({'err': str(e)}))
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
