"""One execution on one worker, seen from the supervisor: create the descriptors, hand the child ends to the
zygote, pump code/tests/stdin in and output/events/verdicts out under caps, and return the raw record.
`execute_chunk` does the same for several stdin/stdout cases of one program in one request (`_inside/leader.py`).

Interpretation (statuses, verdicts) is in `outcome.py`; this module only moves bytes and notices faults
(the zygote vanishing, not answering, or a tester sending malformed frames).
"""
from __future__ import annotations

import functools
import json
import os
import socket
import time
from dataclasses import dataclass, field

from ._inside import board, wire
from .config import Limits, prepared_assert
from .pump import Pump
from .worker import Worker

ANSWER_GRACE_S = 10.0      # beyond the deadline, how long the zygote may take to report before it is a fault
STALL_GRACE_S = 1.0        # in a chunk: beyond a case's deadline, how long until the next report before we stop it
DRAIN_S = 2.0              # after the zygote's report, how long to collect remaining output
SOLUTION_EVENTS_CAP = 1 << 20


@dataclass
class Raw:
    mode: str
    done: dict | None = None
    fault: str | None = None
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    output_total: int = 0
    s_events: list = field(default_factory=list)
    t_frames: list = field(default_factory=list)
    t_err: bytearray = field(default_factory=bytearray)
    output_killed: bool = False
    oom: bool = False


class _Execution:
    def __init__(self, worker: Worker, mode: str, limits: Limits) -> None:
        self.worker = worker
        self.limits = limits
        self.raw = Raw(mode)
        self.pump = Pump()
        self.stdout_cap = limits.max_output_bytes if mode == "solo" else limits.keep_output_bytes
        self.s_frames = wire.FrameBuffer(SOLUTION_EVENTS_CAP)
        self.s_event_bytes = 0
        self.t_buffer = wire.FrameBuffer(64 << 20)
        self.timeout_s = limits.timeout_s

    # ------------------------------------------------------------------------------------- callbacks
    def _output(self, store: bytearray, cap: int, chunk: bytes) -> None:
        self.raw.output_total += len(chunk)
        if len(store) < cap:
            store += chunk[:cap - len(store)]
        if self.raw.output_total > self.limits.max_output_bytes and not self.raw.output_killed:
            self.raw.output_killed = True
            if self.raw.done is None:
                self.worker.send({"op": "kill", "reason": "output_limit"})

    def on_stdout(self, chunk: bytes) -> None:
        self._output(self.raw.stdout, self.stdout_cap, chunk)

    def on_stderr(self, chunk: bytes) -> None:
        self._output(self.raw.stderr, self.limits.keep_output_bytes, chunk)

    def on_solution_events(self, chunk: bytes) -> None:
        # Untrusted: bounded, and a malformed stream just stops being parsed.
        self.s_event_bytes += len(chunk)
        if self.s_frames is None or self.s_event_bytes > SOLUTION_EVENTS_CAP:
            return
        try:
            self.raw.s_events.extend(f for f in self.s_frames.feed(chunk) if isinstance(f, dict))
        except wire.WireError:
            self.s_frames = None

    def on_tester(self, chunk: bytes) -> None:
        try:
            self.raw.t_frames.extend(self.t_buffer.feed(chunk))
        except wire.WireError as exc:
            self.raw.fault = self.raw.fault or f"tester sent a malformed report: {exc}"

    def on_tester_stderr(self, chunk: bytes) -> None:
        if len(self.raw.t_err) < 8192:
            self.raw.t_err += chunk[:8192 - len(self.raw.t_err)]

    def on_zygote(self, chunk: bytes) -> None:
        if not chunk:
            self.raw.fault = self.raw.fault or "the zygote exited during the run"
            return
        head, usage = board.decode(chunk)
        msg = json.loads(head)
        if msg.get("op") == "done":
            for role, extra in usage.items():
                if isinstance(msg.get(role), dict):
                    msg[role].update(extra)
            self.raw.done = msg
            if msg.get("retire"):               # it could not renew its directories: restart before the next run
                self.worker.retire = True

    # ------------------------------------------------------------------------------------------- run
    def start(self, code: str, spec: dict | None, stdin: str | None) -> None:
        mode = self.raw.mode
        names, child, mine = [], [], {}

        def socket_pair(name: str) -> None:
            a, b = socket.socketpair()
            names.append(name)
            mine[name] = a.detach()
            child.append(b.detach())

        def pipe(name: str, child_reads: bool) -> None:
            r, w = os.pipe()
            names.append(name)
            mine[name] = w if child_reads else r
            child.append(r if child_reads else w)

        try:
            socket_pair("s_ctl")
            pipe("s_out", child_reads=False)
            pipe("s_err", child_reads=False)
            if mode == "solo":
                pipe("s_in", child_reads=True)
            else:
                socket_pair("t_ctl")
                pipe("t_err", child_reads=False)
            self.pump.own(*mine.values())
            # Nothing runs in a worker between two runs, so its OOM counter after the previous run is the
            # counter before this one (one read per run instead of two).
            self.oom_before = self.worker.oom_count if self.worker.cgroups else None
            self.worker.send({"op": "run", "mode": mode, "fd_names": names, "limits": self.limits.for_zygote(),
                              "timeout_s": self.limits.timeout_s}, child)
        finally:
            for fd in child:
                os.close(fd)
        self.pump.write(mine["s_ctl"], wire.pack({"code": code}))
        self.pump.read(mine["s_ctl"], self.on_solution_events)
        self.pump.read(mine["s_out"], self.on_stdout)
        self.pump.read(mine["s_err"], self.on_stderr)
        if mode == "solo":
            self.pump.write(mine["s_in"], (stdin or "").encode("utf-8"), close_after=True)
        else:
            self.pump.write(mine["t_ctl"], _packed_payload(json.dumps(wire_spec(spec), sort_keys=True), self.limits))
            self.pump.read(mine["t_ctl"], self.on_tester)
            self.pump.read(mine["t_err"], self.on_tester_stderr)
        self.pump.borrow(self.worker.fileno())
        self.pump.read(self.worker.fileno(), self.on_zygote)

    def poll_wait(self, wait: float) -> None:
        self.pump.poll(min(wait, 0.5))

    def loop(self) -> None:
        backstop = time.monotonic() + self.timeout_s + ANSWER_GRACE_S
        drain_until = None
        while True:
            now = time.monotonic()
            if self.raw.done is not None or self.raw.fault:
                drain_until = drain_until or now + DRAIN_S
                if self.pump.reading <= (1 if self.raw.done is not None else 0) or now >= drain_until:
                    break
                wait = drain_until - now
            elif now >= backstop:
                self.raw.fault = f"the zygote did not report within {self.timeout_s + ANSWER_GRACE_S:.0f}s"
                break
            else:
                wait = backstop - now
            self.poll_wait(wait)
        if self.worker.cgroups:
            after = self.worker.cgroups.oom_kills()
            self.raw.oom = after is not None and self.oom_before is not None and after > self.oom_before
            self.worker.oom_count = after


@functools.lru_cache(maxsize=1024)
def _packed_payload(spec_json: str, limits: Limits) -> bytes:
    """The tester's frame, cached: a GRPO group sends the same tests once per sample."""
    return wire.pack(tester_payload(json.loads(spec_json), limits))


def wire_spec(spec: dict) -> dict:
    """The spec as JSON can carry it: call cases wire-encoded (JSON alone would turn integer dict keys into
    strings and refuse sets), keyword arguments as "kw"."""
    if spec.get("kind") != "call":
        return spec
    cases = [{"args": wire.encode(list(c["args"])), "kw": wire.encode(dict(c.get("kwargs", {}))),
              "expected": wire.encode(c["expected"])} for c in spec["cases"]]
    return {**spec, "cases": cases}


def tester_payload(spec: dict, limits: Limits) -> dict:
    """What the tester receives (from `wire_spec`): assert sources replaced by their cached compiled form."""
    out = {k: v for k, v in spec.items() if k not in ("source", "prelude")}
    if spec.get("kind") == "assert":
        out["prepared"] = prepared_assert(spec["source"], spec.get("prelude", ""))
    out["max_message_bytes"] = limits.max_message_bytes
    return out


@dataclass
class ChunkRaw:
    """What one chunk request produced: the leader's frames and every case's output, in case order."""
    n: int
    done: dict | None = None
    fault: str | None = None
    frames: list = field(default_factory=list)
    killed_case: int | None = None                       # the case stopped at the output cap
    stalled: bool = False
    oom: bool = False

    def __post_init__(self) -> None:                     # per case, in case order
        self.stdout = [bytearray() for _ in range(self.n)]
        self.stderr = [bytearray() for _ in range(self.n)]
        self.output_total = [0] * self.n
        self.closed = [0] * self.n                       # how many of its two outputs reached EOF


class _ChunkExecution(_Execution):
    def __init__(self, worker: Worker, limits: Limits, n: int) -> None:
        super().__init__(worker, "chunk", limits)
        self.chunk = ChunkRaw(n)
        self.ctl_frames = wire.FrameBuffer(SOLUTION_EVENTS_CAP)
        self.progress = time.monotonic()
        self.kept = 0                 # output bytes held for all cases
        self.stopping = False

    def on_output(self, k: int, store: bytearray, cap: int, chunk: bytes) -> None:
        c = self.chunk
        if not chunk:
            c.closed[k] += 1
            return
        c.output_total[k] += len(chunk)
        if len(store) < cap:
            kept = chunk[:cap - len(store)]
            store += kept
            self.kept += len(kept)
        if c.output_total[k] > self.limits.max_output_bytes and c.killed_case is None:
            c.killed_case = k
            self.stop("output_limit")
        elif self.kept > self.limits.max_output_bytes:
            # The chunk holds as much output as one execution may: stop it here, so that the supervisor
            # never keeps more than about two executions' worth; the cases not decided run one by one.
            self.stop("chunk_output")

    def stop(self, reason: str) -> None:
        if self.raw.done is None and not self.stopping:
            self.stopping = True
            self.worker.send({"op": "kill", "reason": reason})

    def on_leader(self, chunk: bytes) -> None:
        try:
            frames = self.ctl_frames.feed(chunk)
        except wire.WireError as exc:
            self.raw.fault = self.raw.fault or f"the chunk leader sent a malformed report: {exc}"
            return
        if frames:
            self.chunk.frames.extend(frames)
            self.progress = time.monotonic()

    def start_chunk(self, code: str, inputs: list[str]) -> None:
        child, mine, cases = [], [], []
        try:
            a, b = socket.socketpair()
            ctl = a.detach()
            child.append(b.detach())
            mine.append(ctl)
            for _ in inputs:
                fds = []
                for child_reads in (True, False, False):
                    r, w = os.pipe()
                    mine.append(w if child_reads else r)
                    child.append(r if child_reads else w)
                    fds.append(mine[-1])
                cases.append(fds)
            self.pump.own(*mine)
            n = len(inputs)
            self.timeout_s = n * (self.limits.timeout_s + STALL_GRACE_S)
            self.worker.send({"op": "run", "mode": "chunk", "fd_names": ["s_ctl"], "limits": self.limits.for_zygote(),
                              "timeout_s": self.timeout_s}, child)
        finally:
            for fd in child:
                os.close(fd)
        self.oom_before = self.worker.oom_count if self.worker.cgroups else None
        self.pump.write(ctl, wire.pack({"code": code, "n": n, "timeout_s": self.limits.timeout_s}))
        self.pump.read(ctl, self.on_leader)
        keep = self.limits.keep_output_bytes
        for k, (fd_in, fd_out, fd_err) in enumerate(cases):
            self.pump.write(fd_in, inputs[k].encode("utf-8"), close_after=True)
            self.pump.read(fd_out, functools.partial(self.on_output, k, self.chunk.stdout[k],
                                                     self.limits.max_output_bytes))
            self.pump.read(fd_err, functools.partial(self.on_output, k, self.chunk.stderr[k], keep))
        self.pump.borrow(self.worker.fileno())
        self.pump.read(self.worker.fileno(), self.on_zygote)

    def poll_wait(self, wait: float) -> None:
        """One pump round; a leader that stops reporting (stopped by its own case, say) is stopped by us."""
        if self.raw.done is None and not self.chunk.stalled and \
                time.monotonic() > self.progress + self.limits.timeout_s + STALL_GRACE_S:
            self.chunk.stalled = True
            self.stop("stalled")
        self.pump.poll(min(wait, 0.1))


def execute_chunk(worker: Worker, code: str, inputs: list[str], limits: Limits) -> ChunkRaw:
    """Run one stdin/stdout program on several inputs in one request; see `_inside/leader.py`."""
    ex = _ChunkExecution(worker, limits, len(inputs))
    try:
        ex.start_chunk(code, inputs)
        ex.loop()
    except (OSError, ValueError) as exc:
        ex.raw.fault = ex.raw.fault or f"{type(exc).__name__}: {exc}"
    finally:
        ex.pump.close()
    c = ex.chunk
    c.done, c.fault, c.oom = ex.raw.done, ex.raw.fault, ex.raw.oom
    return c


def execute(worker: Worker, mode: str, code: str, spec: dict | None, stdin: str | None, limits: Limits) -> Raw:
    """Run once: `mode` "pair" (solution + tester) or "solo" (stdin/stdout program)."""
    ex = _Execution(worker, mode, limits)
    try:
        ex.start(code, spec, stdin)
        ex.loop()
    except (OSError, ValueError) as exc:
        ex.raw.fault = ex.raw.fault or f"{type(exc).__name__}: {exc}"
    finally:
        ex.pump.close()
    return ex.raw
