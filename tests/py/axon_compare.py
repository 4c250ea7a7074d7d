#!/usr/bin/env python3
'''
One fixed session of AxonApi calls through Synapse's own telepath client, for comparing a
syn axon with a Python Axon side by side.

    axon_compare.py URL        (URL ends at the host and port: tcp://root:secret@127.0.0.1:PORT)

Prints one JSON line per step: {"step": NAME, "result": ...} or {"step": NAME, "err": CLASS}.
Bytes print as hex; history times are replaced by whether they are in the session's span.
'''
import sys
import time
import asyncio
import hashlib

from session import emit, genr, step


CHUNK = 16 * 1024 * 1024
# Bytes that span chunks: a file of two whole chunks and a bit.
BIG = bytes(range(256)) * (CHUNK * 2 // 256) + b'tail-end'


async def run(base):
    import synapse.telepath as s_telepath

    async def lengths(name, agen):
        try:
            emit(name, result=[len(item) async for item in agen])
        except Exception as e:
            emit(name, err=type(e).__name__)

    start = int(time.time() * 1000) - 1
    async with await s_telepath.openurl(base + '/axon') as axon:
        await step('metrics.empty', axon.metrics())
        await step('put', axon.put(b'visi'))
        await step('put.again', axon.put(b'visi'))
        await step('put.empty', axon.put(b''))
        await step('puts', axon.puts([b'one', b'two', b'visi']))
        sha = hashlib.sha256(b'visi').digest()
        missing = hashlib.sha256(b'nope').digest()
        await step('has', axon.has(sha))
        await step('has.missing', axon.has(missing))
        await step('size', axon.size(sha))
        await step('size.missing', axon.size(missing))
        await step('wants', axon.wants([sha, missing, hashlib.sha256(b'two').digest()]))
        await genr('get', axon.get(sha))
        await genr('get.empty', axon.get(hashlib.sha256(b'').digest()))
        await genr('get.missing', axon.get(missing))
        await genr('get.range', axon.get(sha, 1, 2))
        await genr('get.range.past', axon.get(sha, 4, 2))
        await genr('get.range.long', axon.get(sha, 2, 100))
        await genr('get.range.badoffs', axon.get(sha, -1, 2))
        await genr('get.range.badsize', axon.get(sha, 0, 0))
        await step('hashset', axon.hashset(sha))
        await step('hashset.missing', axon.hashset(missing))

        async with await axon.upload() as up:
            await up.write(BIG[:CHUNK + 5])
            await up.write(BIG[CHUNK + 5:])
            await step('upload.save', up.save())
            await up.write(b'second ')
            await up.write(b'file')
            await step('upload.save.reused', up.save())
            await step('upload.save.nothing', up.save())
        bigsha = hashlib.sha256(BIG).digest()
        await lengths('get.big.chunks', axon.get(bigsha))
        await lengths('get.big.range', axon.get(bigsha, CHUNK - 3, CHUNK + 10))
        got = b''.join([b async for b in axon.get(bigsha, CHUNK - 3, CHUNK + 10)])
        emit('get.big.range.same', result=got == BIG[CHUNK - 3:2 * CHUNK + 7])
        await step('hashset.big', axon.hashset(bigsha))

        await genr('hashes', axon.hashes(0))
        await genr('hashes.from2', axon.hashes(2))
        await genr('hashes.wait.timeout', axon.hashes(100, wait=True, timeout=0.2))
        rows = [row async for row in axon.history(start)]
        now = int(time.time() * 1000) + 1
        # Files added in one millisecond may come in either order: sort them for comparing.
        emit('history', result=sorted([[start <= t <= now, item] for (t, item) in rows]))
        emit('history.ascending', result=[t for (t, _) in rows] == sorted(t for (t, _) in rows))
        emit('history.tock', result=len([r async for r in axon.history(start, tock=start)]))
        await step('metrics', axon.metrics())

        await step('del', axon.del_(hashlib.sha256(b'one').digest()))
        await step('del.again', axon.del_(hashlib.sha256(b'one').digest()))
        await step('dels', axon.dels([sha, missing]))
        await step('has.deleted', axon.has(sha))
        await genr('get.deleted', axon.get(sha))
        await genr('hashes.after.del', axon.hashes(0))
        await step('put.back', axon.put(b'visi'))
        await genr('hashes.put.back', axon.hashes(0))
        await step('metrics.end', axon.metrics())
        await step('short.has', axon.has(b'short'))
        await step('short.size', axon.size(b'short'))
        await step('short.del', axon.del_(b'short'))
        await genr('short.get', axon.get(b'short'))
        await step('short.wants', axon.wants([b'short']))

        # Text files line by line: every kind of line ending, undecodable bytes, JSON lines.
        text = b'one\ntwo\r\nthree\rfour\n\nlast'
        bad = b'ok\xff\xfeyes\n\xe2\x82\n'
        jsonl = b'{"a": 1, "b": [1, 2.5, null, true, "x"]}\n\n  {"z": "x", "a": 2}  \r\n[1,2]\n"s"\n'
        badjson = b'{"a": 1}\nnot json\n'
        for byts in (text, bad, jsonl, badjson, BIG):
            await axon.put(byts)

        def hexof(byts):
            return hashlib.sha256(byts).hexdigest()

        await genr('readlines', axon.readlines(hexof(text)))
        await genr('readlines.ignore', axon.readlines(hexof(bad)))
        await genr('readlines.replace', axon.readlines(hexof(bad), errors='replace'))
        await genr('readlines.strict', axon.readlines(hexof(bad), errors='strict'))
        await genr('readlines.missing', axon.readlines(hexof(b'nope')))
        await genr('jsonlines', axon.jsonlines(hexof(jsonl)))
        await genr('jsonlines.replace', axon.jsonlines(hexof(jsonl), errors='replace'))
        await genr('jsonlines.bad', axon.jsonlines(hexof(badjson)))
        await genr('jsonlines.missing', axon.jsonlines(hexof(b'nope')))
        # CSV rows (the hash as bytes here, as Synapse takes it for csvrows).
        table = b'a,b,c\r\n1,"two, too","say ""hi"""\n\n"multi\r\nline",x\n  sp, q\nlast,row'
        tabs = b'a\tb\n"c\td"\te\n'
        escaped = b'a\\,b,c\n"q\\"x",y\n'
        unterminated = b'a,"open\n'
        for byts in (table, tabs, escaped, unterminated):
            await axon.put(byts)
        sha = hashlib.sha256
        await genr('csvrows', axon.csvrows(sha(table).digest()))
        await genr('csvrows.skipinitialspace', axon.csvrows(sha(table).digest(), skipinitialspace=True))
        await genr('csvrows.quoting.none', axon.csvrows(sha(table).digest(), quoting=3))
        await genr('csvrows.excel-tab', axon.csvrows(sha(tabs).digest(), dialect='excel-tab'))
        await genr('csvrows.delimiter', axon.csvrows(sha(tabs).digest(), delimiter='\t'))
        await genr('csvrows.escapechar', axon.csvrows(sha(escaped).digest(), escapechar='\\'))
        await genr('csvrows.unterminated', axon.csvrows(sha(unterminated).digest()))
        await genr('csvrows.strict', axon.csvrows(sha(unterminated).digest(), strict=True))
        await genr('csvrows.dialect', axon.csvrows(sha(table).digest(), dialect='nope'))
        await genr('csvrows.missing', axon.csvrows(sha(b'nope').digest()))

        # Binary bytes over three 16 MiB chunks: the lines, counted and hashed.
        lines = [line async for line in axon.readlines(hexof(BIG), errors='replace')]
        digest = hashlib.sha256('\n'.join(lines).encode('utf8')).hexdigest()
        emit('readlines.big', result=[len(lines), digest])


if __name__ == '__main__':
    asyncio.run(run(sys.argv[1]))
