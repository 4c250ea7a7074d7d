#!/usr/bin/env python3
'''
One fixed session of CryoApi and TankApi calls through Synapse's own telepath client, for
comparing a syn cryotank with a Python CryoCell side by side.

    cryo_compare.py URL        (URL ends at the host and port: tcp://root:secret@127.0.0.1:PORT)

Prints one JSON line per step: {"step": NAME, "result": ...} or {"step": NAME, "err": CLASS}.
Bytes print as hex. Nothing is masked here: idens, times and took differ between services,
and the caller masks them.
'''
import sys
import asyncio

from session import genr, step


# Items of every msgpack kind Synapse stores in a tank.
ITEMS = [
    0, 1, -1, 2 ** 40, -(2 ** 40), 2 ** 63 - 1,
    'hello', '', 'ünïcode',
    b'\x00\x01bytes',
    [1, 'two', [3]], (4, 5),
    {'a': 1, 'b': {'c': [None, True, False]}},
    None, True, False, 1.5,
]


async def run(base):
    import synapse.telepath as s_telepath

    async with await s_telepath.openurl(base + '/cryotank') as cryo:
        await step('init', cryo.init('tank0'))
        await step('init again', cryo.init('tank0'))
        await step('puts', cryo.puts('tank0', ITEMS))
        await genr('slice all', cryo.slice('tank0', 0))
        await genr('slice 2, size 3', cryo.slice('tank0', 2, size=3))
        await genr('slice past the end', cryo.slice('tank0', 100))
        await genr('slice size 0', cryo.slice('tank0', 0, size=0))
        await genr('rows', cryo.rows('tank0', 8, 4))
        await step('last', cryo.last('tank0'))
        await step('last of a new tank', cryo.last('empty'))
        await genr('metrics', cryo.metrics('tank0', 0))
        await step('puts 2500', cryo.puts('tank0', list(range(2500))))
        await genr('metrics after', cryo.metrics('tank0', 1, size=2))
        await genr('slice across chunks', cryo.slice('tank0', 1016, size=4))
        await genr('slice waits, then times out', cryo.slice('tank0', 2515, wait=True, timeout=0.3))
        await step('list', cryo.list())

    async with await s_telepath.openurl(base + '/cryotank/tank0') as tank:
        await step('tank iden', tank.iden())
        await step('tank puts', tank.puts(['via', 'tankapi']))
        await genr('tank slice', tank.slice(2515, size=5))
        await genr('tank metrics', tank.metrics(3))

    async with await s_telepath.openurl(base + '/cryotank') as cryo:
        await step('delete', cryo.delete('empty'))
        await step('delete missing', cryo.delete('empty'))
        await step('list after delete', cryo.list())


def main(argv):
    if len(argv) != 1:
        sys.stderr.write(__doc__)
        return 1
    asyncio.run(run(argv[0].rstrip('/')))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
