"""`spky mcp serve --workers N`: N server processes on one port (SO_REUSEPORT, the kernel
spreading connections over them), sharing their data through the store and everything else
through Redis, so that a client's requests may land on any of them.

The supervisor holds the port from the start (bound, never listening), so that port 0 names
one port for all and a port already taken is said at once; it starts the workers, says where
to connect once every one listens, starts another in place of one that dies, and on SIGTERM
or SIGINT stops them all gracefully and waits for them.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import anyio
import anyio.abc
from anyio.streams.text import TextReceiveStream

log = logging.getLogger("sp00ky_mcp.workers")
READY = "sp00ky-mcp listening on "
SHUTTING_DOWN = "sp00ky-mcp shutting down"
# A worker that dies this soon after starting, twice running, is not restarted again: it
# would only die again (a bad configuration, a store that refuses it).
EARLY_DEATH = 5.0
RESTART_PAUSE = 1.0
# How long workers asked to stop may take (their own graceful stop drains requests and
# streams) before they are killed; a second signal kills them at once.
STOP_GRACE = 30.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT and not listening: it keeps the port
    for the workers, which bind it the same way, and receives no connection itself.  A port
    another server listens on is refused first: SO_REUSEPORT alone would share it with any
    process of this user (another deployment, or workers left from one), connection by
    connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if port:
        _check_free(family, host, port)
    holder = socket.socket(family, socket.SOCK_STREAM)
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((host, port))
    except OSError:
        holder.close()
        raise
    return holder


def _check_free(family: socket.AddressFamily, host: str, port: int) -> None:
    """Raises EADDRINUSE when a socket listens on (host, port): a bind without SO_REUSEPORT
    (SO_REUSEADDR lets it pass connections still in TIME_WAIT) fails then."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def worker_command(argv: Sequence[str], port: int) -> list[str]:
    """The worker's command line: the supervisor's, on the reserved port, as one worker."""
    return [
        sys.executable,
        "-m",
        "sp00ky_mcp",
        "mcp",
        "serve",
        *_without_workers(argv),
        "--port",
        str(port),
        "--workers",
        "1",
        "--worker",
    ]


def _without_workers(argv: Sequence[str]) -> list[str]:
    """`argv` less the options the supervisor sets itself (--port and --workers)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--port", "--workers"):
            skip = "=" not in arg
            continue
        kept.append(arg)
    return kept


async def stop_when_orphaned(stop: Callable[[], None]) -> None:
    """In a worker: `stop` once its supervisor is gone, however it went.  The worker's standard
    input is a pipe the supervisor holds open and never writes to; the kernel closes it when
    the supervisor ends, even by SIGKILL (which no handler sees), and the worker then stops
    as on SIGTERM rather than go on serving a port nobody supervises."""
    try:
        if not stat.S_ISFIFO(os.fstat(0).st_mode):
            return  # not started by a supervisor
        while True:
            await anyio.wait_readable(0)
            if not os.read(0, 4096):
                break
    except OSError:  # standard input closed or unreadable: no supervisor to watch
        return
    log.warning("the supervisor of this worker is gone; stopping")
    stop()


class Supervisor:
    def __init__(self, command: list[str], count: int) -> None:
        self.command = command
        self.count = count
        self.ready = anyio.Event()
        self.stopping = False
        self.failed = False
        self._listening = 0
        self._processes: set[anyio.abc.Process] = set()
        self._changed = anyio.Event()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Until every worker has stopped; started once every one listens."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._stop_on_signal)
            for index in range(self.count):
                tasks.start_soon(self._keep, index)
            await self.ready.wait()
            task_status.started()
            await self._all_stopped()
            tasks.cancel_scope.cancel()

    async def _all_stopped(self) -> None:
        while not self.stopping:
            await self._change()
        with anyio.move_on_after(STOP_GRACE):
            while self._processes:
                await self._change()
        if self._processes:
            log.warning("workers still running %.0f s after the stop; killing them", STOP_GRACE)
            self.kill()
        while self._processes:
            await self._change()

    async def _change(self) -> None:
        self._changed = anyio.Event()
        await self._changed.wait()

    def kill(self) -> None:
        for process in list(self._processes):
            if process.returncode is None:
                process.kill()

    def _stopped(self) -> bool:
        return self.stopping

    def stop(self) -> None:
        self.stopping = True
        for process in list(self._processes):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        if not self.ready.is_set():
            self.ready.set()
        self._changed.set()

    async def _stop_on_signal(self) -> None:
        """The first signal stops the workers gracefully; another kills them.  SIGHUP (the
        terminal gone) stops them too, rather than end the supervisor alone and leave them."""
        with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async for _ in signals:
                if self.stopping:
                    self.kill()
                    continue
                print(SHUTTING_DOWN, flush=True)
                self.stop()

    async def _keep(self, index: int) -> None:
        """Worker `index`, started again whenever it dies, until the supervisor stops."""
        early = 0
        while not self.stopping:
            began = time.monotonic()
            code = await self._run_once(index)
            if self._stopped():
                return
            early = early + 1 if time.monotonic() - began < EARLY_DEATH else 0
            if early >= 2:
                log.error("worker %d keeps exiting (code %s); stopping", index, code)
                self.failed = True
                self.stop()
                return
            log.warning("worker %d exited with code %s; starting another", index, code)
            await anyio.sleep(RESTART_PAUSE)

    async def _run_once(self, index: int) -> int | None:
        async with await anyio.open_process(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None
        ) as process:  # its standard input, never written, ends with the supervisor
            self._processes.add(process)
            if self._stopped():
                process.send_signal(signal.SIGTERM)  # started while the others were stopped
            try:
                assert process.stdout is not None
                await self._relay(process.stdout)
                return await process.wait()
            finally:
                self._processes.discard(process)
                self._changed.set()

    async def _relay(self, stdout: anyio.abc.ByteReceiveStream) -> None:
        """The worker's output, less its own 'listening' line: the supervisor says it once,
        when every worker listens."""
        counted = False
        buffer = ""
        async for text in TextReceiveStream(stdout):
            buffer += text
            *lines, buffer = buffer.split("\n")
            for line in lines:
                if line.startswith(READY) and not counted:
                    counted = True
                    self._count_ready()
                elif not line.startswith(SHUTTING_DOWN):
                    print(line, flush=True)

    def _count_ready(self) -> None:
        self._listening += 1
        if self._listening == self.count:
            self.ready.set()
        elif self._listening > self.count:
            log.warning("a worker started in place of one that exited is listening")
