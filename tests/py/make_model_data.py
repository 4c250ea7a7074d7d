#!/usr/bin/env python3
'''
Write the data files of syn's data model (src/cortex/model/) from Python Synapse.

    make_model_data.py DUMP OUTDIR

DUMP is the JSON that dump_model.py writes (getModelDefs() without doc strings). OUTDIR gets:

    model.json    {"synapse": VERSION, "ctors": [...], "types": [...], "forms": [...], "univs": [...],
                   "tagprops": [...], "interfaces": [...], "edges": [...]}
                  the 'all' model definition of the dump, one definition per line.
    lookups.json  {"phone_prefixes": [[prefix, cc], ...], "iana_services": {name: port, ...}}
                  tables that tel:phone and inet:url norms read (synapse.lookup.phonenum, .iana).

Run it with the peer python (target/peers/syn2/bin/python) so that synapse.lookup imports:

    target/peers/syn2/bin/python tests/py/dump_model.py --out model-2.256.json
    target/peers/syn2/bin/python tests/py/make_model_data.py model-2.256.json src/cortex/model
'''
import os
import sys
import json

KEYS = ('ctors', 'types', 'forms', 'univs', 'tagprops', 'interfaces', 'edges')


def dumps(obj):
    return json.dumps(obj, separators=(',', ':'), ensure_ascii=False)


def write_model(dump, path):
    defs = dump['modeldefs']
    if len(defs) != 1 or defs[0][0] != 'all':
        raise SystemExit(f'expected one ("all", mdef) pair, got {[d[0] for d in defs]}')
    mdef = defs[0][1]
    lines = ['{"synapse":' + dumps(dump['synapse']) + ',']
    for i, key in enumerate(KEYS):
        items = mdef.get(key, [])
        lines.append(dumps(key) + ':[')
        lines.extend(dumps(item) + (',' if j < len(items) - 1 else '') for j, item in enumerate(items))
        lines.append(']' + (',' if i < len(KEYS) - 1 else ''))
    lines.append('}')
    with open(path, 'w', encoding='utf8') as fd:
        fd.write('\n'.join(lines) + '\n')


def write_lookups(path):
    import synapse.lookup.iana as s_l_iana
    import synapse.lookup.phonenum as s_l_phone

    prefixes = [[pref, info['cc']] for (pref, info) in s_l_phone.prefixes if info.get('cc')]
    retn = {'phone_prefixes': prefixes, 'iana_services': dict(s_l_iana.services)}
    with open(path, 'w', encoding='utf8') as fd:
        fd.write('{"phone_prefixes":[\n')
        fd.write(',\n'.join(dumps(p) for p in prefixes))
        fd.write('\n],\n"iana_services":' + dumps(retn['iana_services']) + '\n}\n')


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], encoding='utf8') as fd:
        dump = json.load(fd)
    write_model(dump, os.path.join(argv[1], 'model.json'))
    write_lookups(os.path.join(argv[1], 'lookups.json'))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
