#!/usr/bin/env python3
'''
Cryotank write and read timings with Synapse's own telepath client (for benches/cryotank.rs).

    bench_cryo.py URL COUNT BATCH    puts COUNT items into a new tank, BATCH per call, then
                                     reads them all back with one slice

URL ends at the host and port. Each item is a small dict, as feeds write. Prints one JSON
object: {"puts_secs": S, "slice_secs": S, "items": N}.
'''
import sys
import json
import time
import asyncio


async def run(base, count, batch):
    import synapse.telepath as s_telepath
    async with await s_telepath.openurl(base.rstrip('/') + '/cryotank') as cryo:
        await cryo.init('bench')
        t0 = time.perf_counter()
        for start in range(0, count, batch):
            items = [{'indx': i, 'fqdn': f'host{i}.vertex.link', 'seen': 1600000000000 + i}
                     for i in range(start, min(start + batch, count))]
            await cryo.puts('bench', items)
        puts_secs = time.perf_counter() - t0
        t0 = time.perf_counter()
        items = 0
        async for _ in cryo.slice('bench', 0):
            items += 1
        slice_secs = time.perf_counter() - t0
    return {'puts_secs': puts_secs, 'slice_secs': slice_secs, 'items': items}


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 1
    print(json.dumps(asyncio.run(run(argv[0], int(argv[1]), int(argv[2])))))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
