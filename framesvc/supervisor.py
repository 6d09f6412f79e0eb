"""``framesvc serve --processes N``: N worker processes serving one listening port.

One Python process serves on one core, and warm requests for small frames are CPU-bound
in aiohttp; so, like gunicorn or uvicorn ``--workers``, the supervisor here

1. does the one-time start-up work once: migrations, the first superuser, recovery of
   background requests a crash interrupted, the cache's orphan sweep (by running the
   application's own start-up hooks, then its clean-up hooks, without listening);
2. binds the port itself and starts N workers (``framesvc serve`` in a fresh
   interpreter) that are handed their bound sockets and accept on them;
3. restarts a worker that dies, after recovering the background requests it was
   running, with a growing delay when workers die soon after they start (a worker
   that crashes at start cannot spin); and
4. on SIGTERM or SIGINT stops the workers gracefully (SIGTERM: aiohttp finishes
   in-flight requests, background requests are recorded as interrupted) and exits 0.
   A second signal kills what is still running.

How the workers share the port: on Linux, ``SO_REUSEPORT``.  The supervisor binds a
socket per worker (all to one address, with ``SO_REUSEPORT``) and hands each worker
its own; the worker starts listening on it only when its application is ready, and the
kernel spreads new connections evenly over the listening sockets.  The supervisor
keeps one more socket bound (never listening) for its whole life, so the port stays
reserved while workers come and go, and it keeps no copy of a worker's socket, so a
dead worker's socket closes with it and new connections go to the live ones at once.
One listening socket inherited by all workers (the classic pre-fork model, kept as the
fallback where ``SO_REUSEPORT`` is missing) leaves the spread to timing: every idle
worker is woken for a new connection and the first to run accepts all that are queued,
so connections opened one after another all went to one worker (24 of 24 in
``tests/test_processes.py``); only a burst of simultaneous connects (wrk's) spread evenly.
With ``SO_REUSEPORT`` the kernel hashes each connection to a worker's socket, whatever
the timing.  The price: connections still waiting in a worker's accept queue when it
dies are reset (with one shared queue the others would accept them).

Why fresh interpreters (``subprocess`` with ``pass_fds``) rather than ``fork``: the
supervisor has run the start-up work (SQLAlchemy engines, threads of the worker pool,
an event loop); forking a process with threads is unsafe.  Each worker gets the
supervisor's effective settings as ``FRAMESVC_*`` variables, so what it serves with is
exactly what was printed at start.

Workers run in their own session, so a terminal's Ctrl-C reaches only the supervisor
(which then stops them once, gracefully); each also watches a *lifeline* pipe whose
write end only the supervisor holds, and stops itself when the supervisor is gone, so
no worker outlives a killed supervisor.

Metrics: every process writes its values to a private ``PROMETHEUS_MULTIPROC_DIR``
(created here before prometheus-client is imported, removed at exit), and ``/metrics``
sums them (``framesvc.metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from framesvc.config import Settings

log = logging.getLogger("framesvc.supervisor")

#: The listen backlog of the shared sockets (aiohttp's default for its own sites).
BACKLOG = 128
#: A worker that lived at least this long before it died is restarted at once.
STABLE_SECONDS = 30.0
#: Restart delays of workers that keep dying sooner: doubling up to the maximum.
FIRST_DELAY, MAX_DELAY = 0.5, 30.0
#: How long stopping waits for workers (aiohttp gives in-flight requests 60 s).
STOP_TIMEOUT = 75.0
#: Exit status when a worker cannot start at all (as gunicorn's "worker failed to boot").
BOOT_FAILURE = 3


def settings_environment(settings: Settings) -> dict[str, str]:
    """``FRAMESVC_*`` variables that make ``settings_from_env`` return ``settings``
    (with ``processes`` = 1: a worker serves, it does not supervise)."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name == "processes":
            value = 1
        if value is None:
            text = ""
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        out[f"FRAMESVC_{f.name.upper()}"] = text
    return out


#: Whether workers get sockets of their own (see the module docstring).
REUSE_PORT = hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def bind(host: str, port: int, *, listen: bool, reuse_port: bool) -> list[socket.socket]:
    """Sockets bound on every address ``host`` resolves to, as asyncio would bind them
    (``SO_REUSEADDR``; IPv6 sockets IPv6-only so a v4 and a v6 socket can share the
    port), listening with ``BACKLOG`` if ``listen``.  Port 0 takes one free port for
    all of them."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[Any, ...]] = set()
    try:
        for family, kind, proto, _name, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            if listen:
                sock.listen(BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def site_names(sockets: list[socket.socket]) -> list[str]:
    """The URLs the sockets serve, named as aiohttp names its ``SockSite``\\ s."""
    names = []
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        if sock.family == socket.AF_INET6:
            host = f"[{host}]"
        names.append(f"http://{host}:{port}")
    return sorted(names)


# --- the start-up work, run once by the supervisor ------------------------------------------


async def _boot(settings: Settings) -> None:
    """Everything a single process does before it listens, and nothing else: the
    application is built (migrations) and its start-up hooks run (first superuser,
    expired sessions, recovery of interrupted requests, cache sweep), then its
    clean-up hooks."""
    from aiohttp import web

    from framesvc.app import make_app

    runner = web.AppRunner(make_app(settings), handle_signals=False)
    await runner.setup()
    await runner.cleanup()


async def _recover(settings: Settings) -> None:
    """Settle the background requests of dead processes (a worker that just died):
    the same recovery, with the same clean-up of half-created task data, as a start."""
    from aiohttp import web

    from framesvc.app import SERVICES, Services
    from framesvc.http import requests
    from framesvc.store.db import create_engine
    from framesvc.workers import WorkerPool

    engine = create_engine(settings.effective_database_url)
    pool = WorkerPool(1)
    app = web.Application()
    app[SERVICES] = Services(settings=settings, engine=engine, pool=pool)
    try:
        await requests.on_startup(app)
    finally:
        pool.shutdown()
        await engine.dispose()


# --- workers -----------------------------------------------------------------------------------


@dataclass
class Worker:
    """One worker slot: the process in it now (if any) and its restart bookkeeping."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    ready_fd: int | None = None
    ready: bool = False
    started: float = 0.0
    delay: float = 0.0
    restart_at: float | None = None


class Supervisor:
    def __init__(self, settings: Settings, processes: int) -> None:
        self.settings = settings
        self.count = processes
        self.workers = [Worker(i) for i in range(processes)]
        #: Bound for the supervisor's whole life: with ``REUSE_PORT`` never listening (the
        #: port's reservation), otherwise the one listening socket every worker inherits.
        self.sockets: list[socket.socket] = []
        #: The port actually bound (``settings.port``, or the free port taken for 0).
        self.port = settings.port
        self.metrics_dir = ""
        self.stopping = False
        self.killing = False
        self._selector = selectors.DefaultSelector()
        self._wakeup_r = self._wakeup_w = -1
        self._lifeline_r = self._lifeline_w = -1
        self._announced = False

    # -- entry point ------------------------------------------------------------------------

    def run(self) -> int:
        """Boot, serve until SIGTERM/SIGINT, stop; the exit status of ``framesvc serve``."""
        self.metrics_dir = tempfile.mkdtemp(prefix="framesvc-metrics-")
        try:
            # Before anything imports prometheus-client: it picks its value storage then.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
            if "prometheus_client" in sys.modules:
                log.warning("prometheus-client was imported before the supervisor set "
                            "PROMETHEUS_MULTIPROC_DIR; its own start-up metrics are lost")
            asyncio.run(_boot(self.settings))
            self._forget_gauges(os.getpid())
            try:
                self.sockets = bind(self.settings.host, self.settings.port,
                                    listen=not REUSE_PORT, reuse_port=REUSE_PORT)
                self.port = self.sockets[0].getsockname()[1]
            except OSError as exc:
                print(f"framesvc: cannot listen on {self.settings.host}:{self.settings.port}:"
                      f" {exc}", file=sys.stderr, flush=True)
                return 1
            return self._supervise()
        finally:
            for sock in self.sockets:
                sock.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _supervise(self) -> int:
        self._wakeup_r, self._wakeup_w = os.pipe()
        os.set_blocking(self._wakeup_r, False)
        os.set_blocking(self._wakeup_w, False)
        self._selector.register(self._wakeup_r, selectors.EVENT_READ)
        self._lifeline_r, self._lifeline_w = os.pipe()
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)}
        old_wakeup = signal.set_wakeup_fd(self._wakeup_w)
        try:
            for worker in self.workers:
                self._spawn(worker)
            status = self._loop()
            self._stop_all()
            return status
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for worker in self.workers:
                self._close_ready(worker)
            self._selector.close()
            for fd in (self._wakeup_r, self._wakeup_w, self._lifeline_r, self._lifeline_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGCHLD:
            return  # the wakeup fd has woken the loop; it reaps
        if self.stopping:
            self.killing = True
        self.stopping = True

    # -- the loop -----------------------------------------------------------------------------

    def _loop(self) -> int:
        """Serve until asked to stop (0), or until a worker fails to start at all."""
        while not self.stopping:
            self._wait(self._next_timeout())
            for worker in self.workers:
                if self._reap(worker) and not self.stopping:
                    if not self._announced:
                        print("framesvc: a worker process failed to start; stopping",
                              file=sys.stderr, flush=True)
                        return BOOT_FAILURE
                    self._schedule_restart(worker)
            now = time.monotonic()
            for worker in self.workers:
                if (worker.process is None and worker.restart_at is not None
                        and worker.restart_at <= now and not self.stopping):
                    self._spawn(worker)
            if not self._announced and all(w.ready for w in self.workers):
                self._announced = True
                print(f"framesvc: {self.count} worker processes serving "
                      f"(pids {', '.join(str(w.process.pid) for w in self.workers if w.process)})",
                      flush=True)
                print("======== Running on {} ========\n(Press CTRL+C to quit)".format(
                    ", ".join(site_names(self.sockets))), flush=True)
        return 0

    def _next_timeout(self) -> float:
        due = [w.restart_at for w in self.workers if w.process is None and w.restart_at]
        if not due:
            return 1.0
        return max(0.0, min(min(due) - time.monotonic(), 1.0))

    def _wait(self, timeout: float) -> None:
        for key, _events in self._selector.select(timeout):
            fd = int(key.fd)
            if fd == self._wakeup_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(fd, 4096):
                        pass
                continue
            worker = key.data
            try:
                data = os.read(fd, 64)
            except OSError:
                data = b""
            if data:
                worker.ready = True
                if self._announced and worker.process is not None:
                    log.info("worker %d (pid %d) is serving", worker.index, worker.process.pid)
            self._close_ready(worker)

    # -- one worker ---------------------------------------------------------------------------

    def _spawn(self, worker: Worker) -> None:
        own: list[socket.socket] = []
        try:
            if REUSE_PORT:
                own = bind(self.settings.host, self.port, listen=False, reuse_port=True)
        except OSError:
            log.exception("could not bind a socket for worker %d", worker.index)
            self._schedule_restart(worker)
            return
        ready_r, ready_w = os.pipe()
        env = {**os.environ, **settings_environment(self.settings),
               "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir}
        fds = [s.fileno() for s in (own or self.sockets)]
        argv = [sys.executable, "-m", "framesvc.cli", "serve",
                *[arg for fd in fds for arg in ("--listen-fd", str(fd))],
                "--ready-fd", str(ready_w), "--lifeline-fd", str(self._lifeline_r)]
        try:
            worker.process = subprocess.Popen(
                argv, env=env, pass_fds=(*fds, ready_w, self._lifeline_r),
                start_new_session=True,
            )
        except OSError:
            os.close(ready_r)
            log.exception("could not start worker process %d", worker.index)
            worker.process = None
            self._schedule_restart(worker)
            return
        finally:
            os.close(ready_w)
            for sock in own:  # the worker's now; it closes when the worker ends
                sock.close()
        worker.ready_fd = ready_r
        worker.ready = False
        worker.started = time.monotonic()
        worker.restart_at = None
        self._selector.register(ready_r, selectors.EVENT_READ, worker)
        self._publish_pids()
        if self._announced:
            log.info("worker %d started (pid %d)", worker.index, worker.process.pid)

    def _close_ready(self, worker: Worker) -> None:
        if worker.ready_fd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(worker.ready_fd)
            with contextlib.suppress(OSError):
                os.close(worker.ready_fd)
            worker.ready_fd = None

    def _reap(self, worker: Worker) -> bool:
        """If the worker's process has ended: tidy up after it and return True."""
        process = worker.process
        if process is None or process.poll() is None:
            return False
        worker.process = None
        self._close_ready(worker)
        self._forget_gauges(process.pid)
        self._publish_pids()
        if not self.stopping:
            code = process.returncode
            how = f"signal {-code}" if code < 0 else f"status {code}"
            log.warning("worker %d (pid %d) exited with %s", worker.index, process.pid, how)
            try:
                asyncio.run(_recover(self.settings))
            except Exception:
                log.exception("recovery of the requests of worker %d failed", worker.index)
        return True

    def _schedule_restart(self, worker: Worker) -> None:
        lived = time.monotonic() - worker.started
        if worker.ready and lived >= STABLE_SECONDS:
            worker.delay = 0.0
        else:
            worker.delay = min(MAX_DELAY, max(FIRST_DELAY, worker.delay * 2))
        worker.restart_at = time.monotonic() + worker.delay
        log.warning("restarting worker %d in %.1f s", worker.index, worker.delay)

    # -- stopping ------------------------------------------------------------------------------

    def _stop_all(self) -> None:
        running = [w for w in self.workers if w.process is not None]
        for worker in running:
            with contextlib.suppress(ProcessLookupError):
                assert worker.process is not None
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(w.process is not None for w in self.workers):
            if self.killing or time.monotonic() >= deadline:
                for worker in self.workers:
                    if worker.process is not None:
                        with contextlib.suppress(ProcessLookupError):
                            worker.process.kill()
                        worker.process.wait()
            self._wait(0.2)
            for worker in self.workers:
                self._reap(worker)

    # -- metrics bookkeeping --------------------------------------------------------------------

    def _publish_pids(self) -> None:
        from framesvc import metrics

        pids = [os.getpid(), *(w.process.pid for w in self.workers if w.process is not None)]
        with contextlib.suppress(OSError):
            metrics.write_group_pids(self.metrics_dir, pids)

    def _forget_gauges(self, pid: int) -> None:
        """Drop a dead (or, for the supervisor, idle) process's "live" gauges, so the
        sums stop counting builds or queued jobs it will never finish."""
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, self.metrics_dir)


def supervise(settings: Settings) -> int:
    """Run ``settings.process_count`` workers on one port until stopped (see module doc)."""
    return Supervisor(settings, settings.process_count).run()


# --- the worker's side -------------------------------------------------------------------------


def serve_worker(settings: Settings, listen_fds: list[int], ready_fd: int | None,
                 lifeline_fd: int | None) -> int:
    """Serve on sockets inherited from the supervisor until SIGTERM (or the supervisor's
    death, seen as end-of-file on the lifeline)."""
    from aiohttp import web

    from framesvc.app import make_app
    from framesvc.http.fastlane import run_app

    sockets = [socket.socket(fileno=fd) for fd in listen_fds]
    app = make_app(settings)

    if lifeline_fd is not None:
        async def watch_lifeline(_app: web.Application) -> None:
            loop = asyncio.get_running_loop()

            def readable() -> None:
                try:
                    data = os.read(lifeline_fd, 64)
                except BlockingIOError:
                    return
                except OSError:
                    data = b""
                if not data:
                    loop.remove_reader(lifeline_fd)
                    log.warning("the supervisor is gone; stopping")
                    os.kill(os.getpid(), signal.SIGTERM)

            os.set_blocking(lifeline_fd, False)
            loop.add_reader(lifeline_fd, readable)

        app.on_startup.append(watch_lifeline)

    def started(_message: str) -> None:
        # aiohttp calls this once every socket accepts: tell the supervisor.
        if ready_fd is not None:
            with contextlib.suppress(OSError):
                os.write(ready_fd, b"r")
                os.close(ready_fd)

    run_app(app, sockets=sockets, print=started)
    return 0
