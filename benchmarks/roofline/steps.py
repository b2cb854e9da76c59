"""The measured steps: each framework in its own worker process, whole steps and a timer
around every operation (``benchmarks.roofline``, part 3).
"""
from __future__ import annotations

import math
import time

from .. import common
from ..zoo import MODELS


class _Timer:
    """Intervals on the wall clock and, when ``cpu``, on the process's CPU clock
    (``time.process_time``: every thread of the process), recorded by name."""

    def __init__(self, cpu: bool):
        self.cpu = cpu
        self.wall: dict[str, list] = {}
        self.cpu_s: dict[str, list] = {}

    def now(self) -> tuple[float, float]:
        return time.perf_counter(), (time.process_time() if self.cpu else 0.0)

    def add(self, name: str, t0, t1=None) -> None:
        t1 = self.now() if t1 is None else t1
        self.wall.setdefault(name, []).append(t1[0] - t0[0])
        if self.cpu:
            self.cpu_s.setdefault(name, []).append(t1[1] - t0[1])

    def result(self) -> dict:
        return {"wall": self.wall, "cpu": self.cpu_s}


class _Runner:
    """``benchmarks.training``'s runner (model, Adam, loss, batches) plus a step timed
    operation by operation (``op_times``), on the wall clock and, on one thread, on the
    process's CPU clock."""

    def __init__(self, framework: str):
        from ..training import _Runner as TrainingRunner
        self.inner = TrainingRunner(framework)
        self.framework = framework
        self.threads = 1

    def setup(self, model_name: str, threads: int, n_train: int, warmup: int) -> dict:
        batch = MODELS[model_name][1]
        info = self.inner.setup(model_name, threads, n_train, infer_n=batch,
                                infer_batch=batch)
        self.threads = threads
        self.inner.train(warmup)
        layers = list(self.inner.model)
        self.first = next(i for i, layer in enumerate(layers)
                          if next(iter(layer.parameters()), None) is not None)
        return info

    def train(self, steps: int) -> tuple[float, float]:
        """``(wall, CPU)`` seconds per step over ``steps`` training steps (CPU: the
        whole process's, every thread included)."""
        c0 = time.process_time()
        wall = self.inner.train(steps)
        return wall, (time.process_time() - c0) / steps

    def op_times(self, steps: int, warm: int = 0) -> dict:
        """Seconds of each operation in each of ``steps`` training steps, after ``warm``
        untimed ones: ``{"wall": {name: [seconds per step]}, "cpu": {...}}`` (``cpu``
        empty on more than one thread); names as ``model_ops``'s, plus minidl's recurrent
        kernels and the instrumented step's total."""
        if warm:
            self.inner.train(warm)
        timer = _Timer(cpu=self.threads == 1)
        if self.framework == "minidl":
            self._minidl_op_times(steps, timer)
        else:
            self._torch_op_times(steps, timer)
        return timer.result()

    def _minidl_op_times(self, steps: int, timer: _Timer) -> None:
        r = self.inner
        model, opt, crit = r.model, r.opt, r.crit
        model.train()
        model.needs_input_grad = False
        layers = list(model)
        names = [f"{i} {self._label(layer)}" for i, layer in enumerate(layers)]
        sub: dict[str, list] = {}
        restore = self._time_recurrent_kernels(sub, timer)
        try:
            for _ in range(steps):
                sub.clear()
                xb, yb = r._next_batch()
                t_step = timer.now()
                opt.zero_grad()
                x = xb
                for i, layer in enumerate(layers):
                    t0 = timer.now()
                    x = layer(x)
                    timer.add(f"{names[i]} fwd", t0)
                t0 = timer.now()
                loss = crit(x, yb)
                d = crit.backward()
                timer.add("loss (fwd+bwd)", t0)
                for i in range(len(layers) - 1, self.first - 1, -1):
                    t0 = timer.now()
                    d = layers[i].backward(d)
                    timer.add(f"{names[i]} bwd", t0)
                t0 = timer.now()
                opt.step()
                timer.add("optimizer (Adam)", t0)
                timer.add("step (instrumented)", t_step)
                for k, (wall, cpu) in sub.items():
                    timer.add(k, (0.0, 0.0), (wall, cpu))
        finally:
            restore()
        if not math.isfinite(float(loss)):
            raise RuntimeError(f"minidl: non-finite loss {loss}")

    @staticmethod
    def _label(layer) -> str:
        kind = type(layer).__name__
        if kind == "LastHidden":
            return type(layer.rnn).__name__
        return kind

    @staticmethod
    def _time_recurrent_kernels(sub: dict, timer: _Timer):
        """Wrap minidl's recurrent-loop kernels (looked up on their module at each call)
        with timers adding ``[wall, cpu]`` into ``sub``; returns the function that
        unwraps them."""
        try:
            from minidl.kernels import rnn as rk
        except ImportError:
            return lambda: None
        names = {"recurrent_layer_forward": "projection + loop fwd",
                 "recurrent_backward": "recurrent loop bwd",
                 "hidden_weight_grads": "hidden weight grads"}
        saved = {}
        for attr, label in names.items():
            fn = getattr(rk, attr, None)
            if fn is None:
                continue
            saved[attr] = fn

            def timed(*args, _fn=fn, _label=label, **kwargs):
                t0 = timer.now()
                try:
                    return _fn(*args, **kwargs)
                finally:
                    t1 = timer.now()
                    acc = sub.setdefault(_label, [0.0, 0.0])
                    acc[0] += t1[0] - t0[0]
                    acc[1] += t1[1] - t0[1]
            setattr(rk, attr, timed)

        def restore():
            for attr, fn in saved.items():
                setattr(rk, attr, fn)
        return restore

    def _torch_op_times(self, steps: int, timer: _Timer) -> None:
        r = self.inner
        model, opt, crit = r.model, r.opt, r.crit
        model.train()
        layers = list(model)
        names = [f"{i} {self._label(layer)}" for i, layer in enumerate(layers)]
        for _ in range(steps):
            xb, yb = r._next_batch()
            t_step = timer.now()
            opt.zero_grad()
            x = xb
            outs = []
            for i, layer in enumerate(layers):
                t0 = timer.now()
                x = layer(x)
                timer.add(f"{names[i]} fwd", t0)
                outs.append(x)
            # a hook on a layer's output fires just before the gradient function that
            # made it runs: the start of that layer's backward, the end of the next one's
            marks = {}
            for i in range(self.first, len(layers)):
                if outs[i].requires_grad:
                    outs[i].register_hook(lambda g, i=i: marks.__setitem__(i, timer.now()))
            t0 = timer.now()
            loss = crit(x, yb)
            t_loss = timer.now()
            loss.backward()
            t_end = timer.now()
            value = loss.item()
            last = len(layers) - 1
            # the loss: its forward, then its backward up to the last layer's start
            timer.add("loss (fwd+bwd)", t0, marks[last])
            for i in range(last, self.first - 1, -1):
                end = marks.get(i - 1, t_end) if i > self.first else t_end
                timer.add(f"{names[i]} bwd", marks[i], end)
            t0 = timer.now()
            opt.step()
            timer.add("optimizer (Adam)", t0)
            timer.add("step (instrumented)", t_step)
        if not math.isfinite(value):
            raise RuntimeError(f"torch: non-finite loss {value}")


OP_WARM_S = 0.1         # untimed training steps before each block of per-operation timing


def Worker(framework: str) -> common.Worker:
    return common.Worker(_Runner, framework, name=f"{framework} roofline worker")


def measure_model(name: str, threads: int, workers: dict, args, log) -> dict:
    """The step (interleaved blocks, median) and each operation (median over
    ``args.op_steps`` steps, in alternating blocks) for each framework, on the wall
    clock and (one thread) the process's CPU clock."""
    fws = list(workers)
    setup = {fw: workers[fw].call("setup", name, threads, args.n_train, args.warmup)
             for fw in fws}
    probe = {fw: workers[fw].call("train", 3)[0] for fw in fws}
    steps = {fw: max(2, int(args.block_seconds / max(probe[fw], 1e-6))) for fw in fws}
    cpu_samples = {fw: [] for fw in fws}

    def sampler(fw):
        wall, cpu = workers[fw].call("train", steps[fw])
        cpu_samples[fw].append(cpu)
        return wall
    samples = common.interleaved({fw: (lambda fw=fw: sampler(fw)) for fw in fws},
                                 args.rounds, budget_s=args.budget_seconds,
                                 settle_s=common.SETTLE_S)
    per_op = {fw: {"wall": {}, "cpu": {}} for fw in fws}
    blocks = max(1, args.op_blocks)
    per_block = max(1, math.ceil(args.op_steps / blocks))
    # each block of timed steps follows OP_WARM_S of untimed ones: after the settle pause
    # the first steps run slower (the lab MLP 256 on two threads: 1.44 ms per instrumented
    # step in blocks of 10 steps, 0.77 ms in one block of 200, against 0.81-0.84 ms for
    # the plain step; minidl alone)
    warm = {fw: 0 if args.quick else max(3, int(OP_WARM_S / max(probe[fw], 1e-6)))
            for fw in fws}
    for b in range(blocks):
        for fw in fws[b % len(fws):] + fws[:b % len(fws)]:
            time.sleep(common.SETTLE_S)
            for clock, recs in workers[fw].call("op_times", per_block, warm[fw]).items():
                for k, v in recs.items():
                    per_op[fw][clock].setdefault(k, []).extend(v)
    out = {"setup": setup, "steps_per_block": steps}
    for fw in fws:
        out[fw] = {"step": {"wall": {**common.summarize(samples[fw]), "samples": samples[fw]},
                            "cpu": {**common.summarize(cpu_samples[fw]),
                                    "samples": cpu_samples[fw]}},
                   "ops": {clock: {k: {**common.summarize(v), "samples": v}
                                   for k, v in recs.items()}
                           for clock, recs in per_op[fw].items()}}
    log(f"{name:12s} t={threads} " + "  ".join(
        f"{fw} wall {out[fw]['step']['wall']['median'] * 1e3:.3f} ms, cpu "
        f"{out[fw]['step']['cpu']['median'] * 1e3:.3f} ms" for fw in fws))
    return out
