'''
Helpers for the side-by-side session scripts (cryo_compare.py, axon_compare.py): each step
prints one JSON line, {"step": NAME, "result": ...} or {"step": NAME, "err": CLASS}, with
bytes as hex, so that the answers of a syn service and a Python one can be compared line by
line.
'''
import sys
import json


def _fix(o):
    if isinstance(o, (bytes, bytearray)):
        return bytes(o).hex()
    if isinstance(o, dict):
        return {str(k): _fix(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_fix(v) for v in o]
    return o


def emit(step, **kwargs):
    kwargs = {k: _fix(v) for k, v in kwargs.items()}
    sys.stdout.write(json.dumps({'step': step, **kwargs}, separators=(',', ':'), sort_keys=True) + '\n')
    sys.stdout.flush()


async def step(name, coro):
    '''Print what awaiting `coro` gives, or the class of what it raises.'''
    try:
        emit(name, result=await coro)
    except Exception as e:
        emit(name, err=type(e).__name__)


async def genr(name, agen):
    '''Print the items of the async generator `agen` as one list, or what it raises.'''
    try:
        emit(name, result=[item async for item in agen])
    except Exception as e:
        emit(name, err=type(e).__name__)
