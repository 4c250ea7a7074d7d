'''
Parse Storm queries with Synapse's own parser and report the outcome of each as JSON.

Usage: storm_syntax.py QUERIES.json
QUERIES.json holds a list of query strings. Prints one JSON list: for each query either
{"ok": true} or {"ok": false, "name": <error class>, "info": <error info, without text>}.
'''
import sys
import json

import synapse.exc as s_exc
import synapse.lib.parser as s_parser

def outcome(text):
    try:
        s_parser.Parser(text).query()
        return {'ok': True}
    except s_exc.SynErr as e:
        info = {k: v for k, v in e.errinfo.items() if k != 'text'}
        return {'ok': False, 'name': e.__class__.__name__, 'info': info}
    except Exception as e:  # RecursionError and friends: report the class
        return {'ok': False, 'name': e.__class__.__name__, 'info': {'mesg': str(e)}}

def main(path):
    with open(path, 'r', encoding='utf8') as fd:
        texts = json.load(fd)
    json.dump([outcome(t) for t in texts], sys.stdout)

if __name__ == '__main__':
    main(sys.argv[1])
