#!/usr/bin/env python3
'''
Axon write and read timings with Synapse's own telepath client (for benches/axon.rs).

    bench_axon.py URL COUNT MIB    puts COUNT distinct 4 KiB files, 100 per `puts` call;
                                   uploads one MIB MiB file in 8 MiB writes; reads it back

URL ends at the host and port. Prints one JSON object:
{"puts_secs": S, "upload_secs": S, "get_secs": S, "files": N, "bytes": N}.
'''
import sys
import json
import time
import asyncio

PIECE = 8 * 1024 * 1024


def small(i):
    return i.to_bytes(8, 'big') * 512


async def run(base, count, mib):
    import synapse.telepath as s_telepath
    async with await s_telepath.openurl(base.rstrip('/') + '/axon') as axon:
        t0 = time.perf_counter()
        files = 0
        for start in range(0, count, 100):
            saved = await axon.puts([small(i) for i in range(start, min(start + 100, count))])
            files += len(saved)
        puts_secs = time.perf_counter() - t0

        piece = bytes(range(256)) * (PIECE // 256)
        t0 = time.perf_counter()
        async with await axon.upload() as up:
            for i in range(mib * 1024 * 1024 // PIECE):
                await up.write(i.to_bytes(8, 'big') + piece[8:])
            size, sha256 = await up.save()
        upload_secs = time.perf_counter() - t0

        t0 = time.perf_counter()
        got = 0
        async for byts in axon.get(sha256):
            got += len(byts)
        get_secs = time.perf_counter() - t0
        assert got == size, (got, size)
    return {'puts_secs': puts_secs, 'upload_secs': upload_secs, 'get_secs': get_secs,
            'files': files, 'bytes': got}


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 1
    print(json.dumps(asyncio.run(run(argv[0], int(argv[1]), int(argv[2])))))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
