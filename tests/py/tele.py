#!/usr/bin/env python3
'''
A small command line around Synapse's own telepath client, for interop tests.

    tele.py URL call METHOD [ARG...] [--kwargs JSON]   print the result as one JSON value
    tele.py URL genr METHOD [ARG...] [--kwargs JSON] [--limit N]
                                                       print one JSON line per yielded item
                                                       (stop after N items, abandoning the rest)
    tele.py URL storm QUERY [--opts JSON]              print each storm message as a JSON line

--certdir DIR gives an ssl:// URL the certdir DIR (Synapse's openurl(url, certdir=...)):
its cas/*.crt are trusted, and ?certname=NAME presents users/NAME.crt.

Each ARG is parsed as JSON; an ARG that is not valid JSON is passed as a plain string.
Bytes print as hex strings, tuples as lists, sets as sorted lists.

On an exception it prints {"err": NAME, "mesg": ..., "info": {...}} as one JSON line and exits 2.
NAME is the exception class (for an exception class the client does not know, the remote
class name, from Synapse's "errx").  Usage errors exit 1.
'''
import sys
import json
import asyncio
import inspect
import argparse


def _default(o):
    if isinstance(o, (bytes, bytearray, memoryview)):
        return bytes(o).hex()
    if isinstance(o, (set, frozenset)):
        try:
            return sorted(o)
        except TypeError:
            return list(o)
    if isinstance(o, BaseException):
        return {'err': type(o).__name__, 'mesg': str(o)}
    return repr(o)


def _fix(o):
    # json only calls default() for objects it cannot encode; bytes in dict keys or
    # tuples need no help, but dict keys of other types (bytes, tuples, ints) do.
    if isinstance(o, dict):
        return {(_key(k)): _fix(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_fix(v) for v in o]
    return o


def _key(k):
    if isinstance(k, (bytes, bytearray)):
        return bytes(k).hex()
    if isinstance(k, (str, int, float, bool)) or k is None:
        return k
    return json.dumps(_fix(k), default=_default, separators=(',', ':'))


def emit(obj):
    sys.stdout.write(json.dumps(_fix(obj), default=_default, separators=(',', ':')) + '\n')
    sys.stdout.flush()


def parsearg(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


async def aiter_or_value(valu):
    '''Yield the items of an async generator / telepath GenrIter, or of a list.'''
    if inspect.isawaitable(valu):
        valu = await valu
    if hasattr(valu, '__aiter__'):
        async for item in valu:
            yield item
    elif isinstance(valu, (list, tuple)):
        for item in valu:
            yield item
    else:
        yield valu


async def run(opts):
    import synapse.telepath as s_telepath

    conn = {}
    if opts.certdir is not None:
        import synapse.lib.certdir as s_certdir
        conn['certdir'] = s_certdir.CertDir(path=(opts.certdir,))

    async with await s_telepath.openurl(opts.url, **conn) as prox:

        if opts.mode == 'storm':
            sopts = json.loads(opts.opts) if opts.opts else None
            async for mesg in prox.storm(opts.target, opts=sopts):
                emit(mesg)
            return 0

        args = [parsearg(a) for a in opts.args]
        kwargs = json.loads(opts.kwargs) if opts.kwargs else {}
        meth = getattr(prox, opts.target)
        valu = meth(*args, **kwargs)

        if opts.mode == 'call':
            if inspect.isawaitable(valu):
                valu = await valu
            if hasattr(valu, '__aiter__'):
                valu = [item async for item in valu]
            emit(valu)
            return 0

        count = 0
        async for item in aiter_or_value(valu):
            emit(item)
            count += 1
            if opts.limit is not None and count >= opts.limit:
                break
        return 0


def errinfo(e):
    name = type(e).__name__
    info = {}
    mesg = str(e)
    items = getattr(e, 'items', None)
    if callable(items):
        try:
            info = dict(items())
        except Exception:
            info = {}
        name = info.get('errx', name)
        mesg = info.get('mesg', mesg)
    return {'err': name, 'mesg': mesg, 'info': info}


def main(argv):
    pars = argparse.ArgumentParser(prog='tele.py', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    pars.add_argument('url')
    pars.add_argument('mode', choices=('call', 'genr', 'storm'))
    pars.add_argument('target', help='METHOD, or the storm QUERY')
    pars.add_argument('args', nargs='*', help='JSON arguments (call/genr)')
    pars.add_argument('--kwargs', default=None, help='JSON object of keyword arguments (call/genr)')
    pars.add_argument('--opts', default=None, help='JSON storm opts (storm)')
    pars.add_argument('--limit', type=int, default=None, help='stop a generator after N items (genr)')
    pars.add_argument('--certdir', default=None, help='certdir for ssl:// URLs')
    opts = pars.parse_args(argv)

    if opts.mode == 'storm' and opts.args:
        pars.error('storm takes one QUERY argument (quote it)')

    try:
        return asyncio.run(run(opts))
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # report every failure as JSON, including connection errors
        if isinstance(e, SystemExit):
            raise
        emit(errinfo(e))
        return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
