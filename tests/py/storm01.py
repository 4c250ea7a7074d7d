"""Run Storm queries on a Synapse 0.1.x cortex with its own telepath client.

Usage: storm01.py URL QUERY [QUERY ...]
       storm01.py --nodes URL QUERY

The first form runs each query in turn; it prints nothing and exits 0 when no
query answers with an `err` message, else prints that message and exits 1.
The second prints each node of the query as one JSON line, [ndef, props, tags]
with sorted keys.
"""
import asyncio
import json
import sys

import synapse.telepath as s_telepath


async def run(url, queries, nodes):
    async with await s_telepath.openurl(url) as core:
        for query in queries:
            async for mesg in core.storm(query):
                if mesg[0] == 'err':
                    print(repr(mesg))
                    return 1
                if nodes and mesg[0] == 'node':
                    ndef, info = mesg[1]
                    row = [ndef, info.get('props'), info.get('tags')]
                    print(json.dumps(row, sort_keys=True))
    return 0


if __name__ == '__main__':
    args = sys.argv[1:]
    nodes = args[:1] == ['--nodes']
    if nodes:
        args = args[1:]
    sys.exit(asyncio.run(run(args[0], args[1:], nodes)))
