# What a node's heap holds, measured on MicroPython (bench/firmware_heap.py runs this in place of the
# node's main.py, through gateway.sim.device_run.stream_device(main=...)). Runs the node as main.py does
# and prints, as `census ...` lines:
#   module NAME BYTES kept|dropped  heap kept by importing NAME, its own imports not included: on a
#                                   build without citynode frozen, its bytecode, constants, function
#                                   and class objects, module dict, and the names it interned first
#   part NAME BYTES                 heap kept by a step of the boot, its imports not included:
#                                   hal (the board's HAL), role (sensors, drivers' buffers, role data),
#                                   link (the MAC, radio, session store), node (app.Node), join (the
#                                   node's first boot: join, session, status uplink, first downlink)
#   qstr N BYTES                    interned names in the heap (micropython.qstr_info): pools + text
#   resident BYTES                  gc.mem_alloc() after a collection at the end of the last cycle
# Every figure is gc.mem_alloc() after gc.collect() around the step, so garbage is not counted.
import builtins
import gc
import sys

import micropython

_import = builtins.__import__
_stack = []
_modules = []
_parts = []


def _measured(fn, record, name):
    def run(*args, **kwargs):
        gc.collect()
        before = gc.mem_alloc()
        _stack.append(0)
        try:
            result = fn(*args, **kwargs)
        finally:
            inner = _stack.pop()
        gc.collect()
        total = gc.mem_alloc() - before
        if _stack:
            _stack[-1] += total
        record.append((name, total - inner))
        return result

    return run


def _hooked_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level or name in sys.modules:
        return _import(name, globals, locals, fromlist, level)
    module = _measured(_import, _modules, name)(name, globals, locals, fromlist, level)
    _patch(name)
    return module


def _patch(name):  # wrap the boot's steps as their modules arrive
    module = sys.modules.get(name)
    if name == "citynode.hal":
        module.load = _measured(module.load, _parts, "hal")
    elif name == "citynode.roles":
        module.build = _measured(module.build, _parts, "role")
    elif name == "citynode.maclink":
        module.lorawan_link = _measured(module.lorawan_link, _parts, "link")
    elif name == "citynode.app":
        module.Node.__init__ = _measured(module.Node.__init__, _parts, "node")
        module.Node.boot = _measured(module.Node.boot, _parts, "join")


def _qstr():
    # qstr_info() prints "qstr pool: n_pool=.., n_qstr=N, n_str_data_bytes=.., n_total_bytes=B"
    micropython.qstr_info()


builtins.__import__ = _hooked_import
from citynode.app import Node as _Node  # noqa: E402  (the hook patches it as it loads)

_run = _Node.run


def _run_and_report(self, cycles=None, heap_report=False):
    _run(self, cycles, heap_report)
    builtins.__import__ = _import
    gc.collect()
    for name, size in _modules:
        if name.startswith("citynode"):
            print("census module %s %d %s" % (name, size, "kept" if name in sys.modules else "dropped"))
    for name, size in _parts:
        print("census part %s %d" % (name, size))
    _qstr()
    print("census resident %d" % gc.mem_alloc())


_Node.run = _run_and_report
from citynode.run import main  # noqa: E402

main()
