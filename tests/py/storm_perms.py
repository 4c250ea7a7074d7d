#!/usr/bin/env python3
'''
Storm edit permissions of a non-admin user, step by step, against one cortex.

    storm_perms.py URL STEPS.json

URL is the cortex as root (tcp://root:PASSWD@HOST:PORT/). The script adds the user "visi"
(password "secret") and runs STEPS.json, a list of:

    ["rule", ALLOW, "perm.path", LAYER]   addUserRule for visi (LAYER true: on the gate of the
                                          default view's write layer)
    ["storm", QUERY]                      storm as visi: one line with the err (if any) and the
                                          number of nodes the root user then counts for QUERY2
    ["count", QUERY]                      count as root

Each step prints one JSON line: {"ok": VALUE} or {"err": NAME, "mesg": MESG}, with visi's
iden, the layer iden and visi's name masked as USER, LAYER.
'''
import sys
import json
import asyncio


async def main(url, steps):
    import synapse.telepath as s_telepath

    async with await s_telepath.openurl(url) as core:
        visi = await core.addUser('visi', 'secret')
        layer = await core.callStorm('return($lib.layer.get().iden)')
        host = url.split('@', 1)[1]
        def mask(text):
            return text.replace(visi['iden'], 'USER').replace(layer, 'LAYER')
        async with await s_telepath.openurl(f'tcp://visi:secret@{host}') as asvisi:
            for step in steps:
                try:
                    if step[0] == 'rule':
                        _, allow, perm, onlayer = step
                        rule = (allow, tuple(perm.split('.')))
                        await core.addUserRule(visi['iden'], rule, gateiden=layer if onlayer else None)
                        line = {'ok': None}
                    elif step[0] == 'storm':
                        err = None
                        async for mesg in asvisi.storm(step[1]):
                            if mesg[0] == 'err':
                                err = mesg[1]
                        line = {'ok': None} if err is None else {'err': err[0], 'mesg': mask(err[1].get('mesg', ''))}
                    else:
                        line = {'ok': await core.count(step[1])}
                except Exception as e:
                    line = {'err': type(e).__name__, 'mesg': mask(str(getattr(e, 'errinfo', {}).get('mesg', e)))}
                print(json.dumps(line), flush=True)


if __name__ == '__main__':
    with open(sys.argv[2]) as fd:
        asyncio.run(main(sys.argv[1], json.load(fd)))
