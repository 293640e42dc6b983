"""``citynode virtual-device``: run a virtual node (MicroPython unix port behind a pty) until Ctrl-C.

Example::

    citynode virtual-device --fs build/vdev
    # prints the port, e.g. /dev/pts/3; in another terminal:
    mpremote connect /dev/pts/3 ls
    citynode flash --port /dev/pts/3 --board sim --device 70B3D57ED0000001
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from gateway.sim.virtual_device import EXIT_CODES, Reset, VirtualDevice

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "virtual-device",
        help="run a virtual node on a pseudo-terminal (mpremote, pyserial and `citynode flash` can open it)",
        description="Start the MicroPython unix port behind a pty that speaks a board's REPL; prints the "
        "port path and runs until Ctrl-C. Exit codes of the interpreter become reset causes: "
        + ", ".join(f"{code}={cause}" for code, cause in EXIT_CODES.items()) + ", other=panic.",
    )
    parser.add_argument("--fs", type=Path, required=True, help="directory that is the device's filesystem")
    parser.add_argument("--heapsize", default=None,
                        help="MicroPython heap of the app (default: the node's budget on the chosen interpreter, "
                             "by the role flashed: 64k on the 32-bit frozen build, see bench/RESULTS.md)")
    parser.add_argument("--no-boot", action="store_true", help="do not run boot.py/main.py on the first start")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_reset(reset: Reset) -> None:
        print(f"reset: interpreter exited with {reset.exit_code}, restarted with reset cause {reset.cause}",
              flush=True)

    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with VirtualDevice(args.fs, args.heapsize, boot=not args.no_boot, on_reset=on_reset) as device:
            print(device.port, flush=True)
            print(f"virtual device on {device.port} (filesystem {device.fs_dir}); Ctrl-C to stop", flush=True)
            try:
                while not stop.wait(0.5):
                    if device.error:
                        print(f"virtual device stopped: {device.error}", flush=True)
                        return 1
            except KeyboardInterrupt:
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
