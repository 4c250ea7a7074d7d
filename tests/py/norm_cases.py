#!/usr/bin/env python3
'''
Normalize test inputs with a real Python Synapse cortex's data model and print the results.

    norm_cases.py CASES.json

CASES.json is a JSON list of [name, value] pairs, name a type or else a prop (whose type,
with its declared options, is used); lists in values stay lists, as storm passes them.
The output (stdout) is one JSON list, one item per case:

    {"norm": N, "subs": {...}, "adds": [[form, norm], ...], "repr": R}   on success
    {"err": [ExcName, mesg]}                                           on failure

It starts one throwaway cortex in this process (temporary directory, no network).
'''
import sys
import json
import asyncio
import tempfile


def _default(o):
    if isinstance(o, (bytes, bytearray)):
        return bytes(o).hex()
    raise TypeError(f'cannot encode {type(o).__name__}')


def normone(model, name, valu):
    typ = model.type(name)
    if typ is None and model.prop(name) is not None:
        typ = model.prop(name).type
    if typ is None:
        return {'err': ['NoSuchType', f'No type named {name}.']}
    try:
        norm, info = typ.norm(valu)
    except Exception as e:
        mesg = e.get('mesg') if hasattr(e, 'get') else None
        if mesg is None:
            mesg = str(e)
        return {'err': [e.__class__.__name__, mesg]}
    retn = {
        'norm': norm,
        'subs': info.get('subs', {}),
        'adds': [[a[0], a[1]] for a in info.get('adds', ())],
    }
    try:
        retn['repr'] = typ.repr(norm)
    except Exception as e:
        retn['repr'] = ['!' + e.__class__.__name__, str(e)]
    return retn


async def main(path):
    import synapse.cortex as s_cortex
    with open(path, encoding='utf8') as fd:
        cases = json.load(fd)
    with tempfile.TemporaryDirectory(prefix='norm-cases-') as dirn:
        conf = {'health:sysctl:checks': False}
        async with await s_cortex.Cortex.anit(dirn, conf=conf) as core:
            return [normone(core.model, name, valu) for (name, valu) in cases]


if __name__ == '__main__':  # required: Synapse spawns worker processes that re-import __main__
    results = asyncio.run(main(sys.argv[1]))
    sys.stdout.write(json.dumps(results, default=_default) + '\n')
