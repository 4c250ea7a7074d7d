#!/usr/bin/env python3
'''
Print a Python Synapse cortex's getModelDict() as one JSON object, with every "doc" and "ex"
key removed (syn's model data carries neither).

    model_dict.py

It starts one throwaway cortex in this process (temporary directory, no network).
'''
import sys
import json
import asyncio
import tempfile

DOCKEYS = ('doc', 'ex')


def strip(item):
    if isinstance(item, dict):
        return {k: strip(v) for k, v in item.items() if k not in DOCKEYS}
    if isinstance(item, (list, tuple)):
        return [strip(v) for v in item]
    return item


async def main():
    import synapse.cortex as s_cortex
    with tempfile.TemporaryDirectory(prefix='model-dict-') as dirn:
        conf = {'health:sysctl:checks': False}
        async with await s_cortex.Cortex.anit(dirn, conf=conf) as core:
            return strip(await core.getModelDict())


if __name__ == '__main__':  # required: Synapse spawns worker processes that re-import __main__
    sys.stdout.write(json.dumps(asyncio.run(main())) + '\n')
