#!/usr/bin/env python3
'''
Dump a Python Synapse 2.x cortex's data model (getModelDefs()) to JSON, without documentation.

    dump_model.py [--url URL] [--out PATH] [--keep-docs] [--indent N]

Without --url it starts a throwaway cortex in this process (in a temporary directory, no network);
with --url it asks a running cortex over telepath (tcp://root:secret@127.0.0.1:PORT/).

The output is one JSON object:

    {"synapse": "2.256.0",            the version that produced it
     "stripped": ["doc", "ex"],       info keys removed from every info dict
     "modeldefs": [["all", MDEF]]}    getModelDefs(), tuples as lists

MDEF keeps everything that affects behaviour: ctors (name, python class, opts, info), types
(name, (base, opts), info with bases/stortype/interfaces/template/deprecated...), forms (name,
info, props as (name, (type, opts), info)), univs, tagprops, interfaces (with their props and
templates) and edges ((n1form, verb, n2form), info). Only "doc" (description text) and "ex"
(an example value) are removed, and only from the info dicts, never from opts or templates.
UI hints ("display", "disp") and "deprecated" flags stay.
'''
import sys
import json
import asyncio
import argparse
import tempfile

DOCKEYS = ('doc', 'ex')


def stripinfo(info):
    '''Copy an info dict without the documentation keys (recursing into its interface props).'''
    if not isinstance(info, dict):
        return info
    info = {k: v for k, v in info.items() if k not in DOCKEYS}
    props = info.get('props')
    if isinstance(props, (list, tuple)):
        info['props'] = [stripprop(p) for p in props]
    return info


def stripprop(prop):
    # (name, (type, opts), info)
    if isinstance(prop, (list, tuple)) and len(prop) == 3 and isinstance(prop[2], dict):
        return (prop[0], prop[1], stripinfo(prop[2]))
    return prop


def stripmdef(mdef):
    mdef = dict(mdef)

    # (name, pyclass, opts, info)
    mdef['ctors'] = [(c[0], c[1], c[2], stripinfo(c[3])) for c in mdef.get('ctors', ())]
    # (name, (base, opts), info)
    mdef['types'] = [(t[0], t[1], stripinfo(t[2])) for t in mdef.get('types', ())]
    # (name, info, props)
    mdef['forms'] = [(f[0], stripinfo(f[1]), [stripprop(p) for p in f[2]])
                     for f in mdef.get('forms', ())]
    # (name, (type, opts), info)
    mdef['univs'] = [stripprop(u) for u in mdef.get('univs', ())]
    mdef['tagprops'] = [stripprop(t) for t in mdef.get('tagprops', ())]
    # (name, info)
    mdef['interfaces'] = [(i[0], stripinfo(i[1])) for i in mdef.get('interfaces', ())]
    # ((n1form, verb, n2form), info)
    mdef['edges'] = [(e[0], stripinfo(e[1])) for e in mdef.get('edges', ())]
    return mdef


def _default(o):
    if isinstance(o, (bytes, bytearray)):
        return bytes(o).hex()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f'cannot encode {type(o).__name__}: {o!r}')


async def getdefs(url):
    if url is not None:
        import synapse.telepath as s_telepath
        async with await s_telepath.openurl(url) as core:
            info = await core.getCellInfo()
            return info['synapse']['verstring'], await core.getModelDefs()

    import synapse.cortex as s_cortex
    import synapse.lib.version as s_version
    with tempfile.TemporaryDirectory(prefix='dump-model-') as dirn:
        conf = {'health:sysctl:checks': False}
        async with await s_cortex.Cortex.anit(dirn, conf=conf) as core:
            return s_version.verstring, await core.getModelDefs()


def main(argv):
    pars = argparse.ArgumentParser(prog='dump_model.py', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    pars.add_argument('--url', default=None, help='a running cortex; default: start one in-process')
    pars.add_argument('--out', default='-', help='output file (default: stdout)')
    pars.add_argument('--keep-docs', action='store_true', help='keep doc/ex strings')
    pars.add_argument('--indent', type=int, default=1, help='JSON indent (0 for one line)')
    opts = pars.parse_args(argv)

    vers, defs = asyncio.run(getdefs(opts.url))
    if not opts.keep_docs:
        defs = [(name, stripmdef(mdef)) for (name, mdef) in defs]

    retn = {
        'synapse': vers,
        'stripped': [] if opts.keep_docs else list(DOCKEYS),
        'modeldefs': defs,
    }
    text = json.dumps(retn, default=_default, indent=opts.indent or None,
                      separators=(',', ':') if not opts.indent else None)
    if opts.out == '-':
        sys.stdout.write(text + '\n')
    else:
        with open(opts.out, 'w') as fd:
            fd.write(text + '\n')
    return 0


if __name__ == '__main__':  # required: Synapse spawns worker processes that re-import __main__
    sys.exit(main(sys.argv[1:]))
