#!/usr/bin/env python3
'''
Run storm queries against a real (in-process) Python Synapse cortex over telepath and print
every message each query produced.

    storm_compare.py QUERIES.json

QUERIES.json is a JSON list of [text, opts, mode] triples, run in order against one fresh
cortex (so edits of earlier queries are seen by later ones). mode is "storm", "call" or
"count". An opts "view" of "$fork" runs the query in a fork of the default view, "$fork2" in a
fork of that fork (each made on first use with $lib.view.get().fork()). The output (stdout) is one JSON list with, per query: for "storm", the list of
(type, info) messages `prox.storm(text, opts=opts)` yielded, or, when the generator raised
before any message, [["raised", [ExcName, info]]]; for "call" and "count",
[["return", value]] or [["raised", [ExcName, info]]].
Bytes are written as {"$bytes": hex}.

The cortex runs in this process (temporary directory, no network); see storm.md §8.
'''
import sys
import json
import asyncio
import tempfile


def _default(o):
    if isinstance(o, (bytes, bytearray)):
        return {'$bytes': bytes(o).hex()}
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f'cannot encode {type(o).__name__}')


async def main(path):
    import synapse.exc as s_exc
    import synapse.cortex as s_cortex

    with open(path, encoding='utf8') as fd:
        queries = json.load(fd)

    results = []
    with tempfile.TemporaryDirectory(prefix='storm-compare-') as dirn:
        conf = {'health:sysctl:checks': False}
        async with await s_cortex.Cortex.anit(dirn, conf=conf) as core:
            # A tag prop for the tag prop queries (the Rust side defines the same one).
            await core.addTagProp('score', ('int', {}), {'doc': 'a score'})
            forks = {}

            async def resolve(opts):
                view = (opts or {}).get('view')
                if not (isinstance(view, str) and view.startswith('$fork')):
                    return opts
                if view not in forks:
                    parent = core.view.iden
                    if view != '$fork':
                        parent = (await resolve({'view': view[:-1]}))['view']
                    forks[view] = await core.callStorm(
                        'return($lib.view.get($iden).fork().iden)', opts={'vars': {'iden': parent}})
                return dict(opts, view=forks[view])

            async with core.getLocalProxy() as prox:
                for text, opts, mode in queries:
                    opts = await resolve(opts)
                    msgs = []
                    try:
                        if mode == 'call':
                            msgs = [('return', await prox.callStorm(text, opts=opts))]
                        elif mode == 'count':
                            msgs = [('return', await prox.count(text, opts=opts))]
                        else:
                            async for mesg in prox.storm(text, opts=opts):
                                msgs.append(mesg)
                    except s_exc.SynErr as e:
                        msgs = [('raised', (e.__class__.__name__, e.errinfo))]
                    results.append(msgs)
    return results


if __name__ == '__main__':  # required: Synapse spawns worker processes that re-import __main__
    results = asyncio.run(main(sys.argv[1]))
    sys.stdout.write(json.dumps(results, default=_default) + '\n')
