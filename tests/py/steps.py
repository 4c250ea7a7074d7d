#!/usr/bin/env python3
'''
Run a list of steps against a cortex with Synapse's own telepath client and print one JSON
line per step, so a test can give the same steps to syn and to a Python cortex and compare.

    steps.py URL STEPS.json

STEPS.json is a list; each step is one of:

    ["call", METHOD, [ARG, ...], {KWARG: ...}, [PATH, ...]]
                                                 the result (or, given PATHs, the part of
                                                 it at each PATH), or the error
    ["nodes", QUERY, OPTS]                       the nodes storm yields, each as
                                                 [ndef, props, tags, tagprops, nodedata]
                                                 (.created dropped, tag times as given),
                                                 plus the err and warn messages

Lists in ARGs are passed as tuples (as msgpack hands them to Synapse). Each output line is
{"ok": VALUE} or {"err": NAME, "mesg": MESG or null}; bytes print as hex, tuples as lists.
'''
import sys
import json
import asyncio


def _fix(o):
    if isinstance(o, dict):
        return {(k if isinstance(k, str) else json.dumps(_fix(k))): _fix(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_fix(v) for v in o]
    if isinstance(o, (bytes, bytearray)):
        return bytes(o).hex()
    return o


def _tuples(o):
    if isinstance(o, list):
        return tuple(_tuples(v) for v in o)
    if isinstance(o, dict):
        return {k: _tuples(v) for k, v in o.items()}
    return o


def pick(valu, path):
    '''The part of valu at path: dict keys, list indexes ("0"), or "=NAME" for the item of a
    list whose first element is NAME; None where nothing is there.'''
    for key in path:
        if isinstance(valu, dict):
            valu = valu.get(key)
        elif isinstance(valu, (list, tuple)) and key.startswith('='):
            valu = next((v for v in valu if v and v[0] == key[1:]), None)
        elif isinstance(valu, (list, tuple)) and key.isdigit() and int(key) < len(valu):
            valu = valu[int(key)]
        else:
            return None
    return valu


def errline(e):
    name = type(e).__name__
    mesg = str(e)
    items = getattr(e, 'items', None)
    if callable(items):
        info = dict(items())
        name = info.get('errx', name)
        # An error raised without a message has none on the wire either (its str() names
        # the raising source line, which differs between implementations).
        mesg = info.get('mesg')
    return {'err': name, 'mesg': mesg}


async def nodes(prox, query, opts):
    out = []
    msgs = []
    async for mesg in prox.storm(query, opts=opts):
        if mesg[0] == 'node':
            ndef, info = mesg[1]
            props = {k: v for k, v in info.get('props', {}).items() if k != '.created'}
            out.append([ndef, props, info.get('tags', {}), info.get('tagprops', {}),
                        info.get('nodedata', {})])
        elif mesg[0] in ('err', 'warn'):
            msgs.append([mesg[0], mesg[1][0] if mesg[0] == 'err' else mesg[1].get('mesg')])
    out.sort(key=lambda n: json.dumps(_fix(n[0])))
    return {'nodes': out, 'msgs': msgs}


async def run(url, steps):
    import synapse.telepath as s_telepath
    async with await s_telepath.openurl(url) as prox:
        for step in steps:
            kind = step[0]
            try:
                if kind == 'call':
                    args = [_tuples(a) for a in step[2]] if len(step) > 2 else []
                    kwargs = {k: _tuples(v) for k, v in step[3].items()} if len(step) > 3 else {}
                    valu = await getattr(prox, step[1])(*args, **kwargs)
                    if len(step) > 4:
                        valu = [pick(valu, path) for path in step[4]]
                    line = {'ok': valu}
                elif kind == 'nodes':
                    line = {'ok': await nodes(prox, step[1], step[2] if len(step) > 2 else None)}
                else:
                    raise ValueError(f'unknown step kind {kind}')
            except Exception as e:
                line = errline(e)
            sys.stdout.write(json.dumps(_fix(line), separators=(',', ':'), sort_keys=True) + '\n')
            sys.stdout.flush()


def main(argv):
    if len(argv) != 2:
        sys.stderr.write('usage: steps.py URL STEPS.json\n')
        return 1
    with open(argv[1]) as fd:
        steps = json.load(fd)
    asyncio.run(run(argv[0], steps))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
