"""Soak test: 4 workers on PostgreSQL for 10 minutes, random SIGKILLs, one database restart.

    python -m benchmarks.soak                 # 10 minutes (make soak)
    python -m benchmarks.soak --minutes 1     # a quick proof that it works

Not part of the test suite (it takes its time).  It starts its own throwaway PostgreSQL
server (``benchmarks.pgserver``), creates a study of tiny lab-mlp trials and keeps
``--workers`` ``tuning worker`` processes running on it, restarting each one that dies.
Once the first trial has finished (the workers are warm: data loaded, kernels
compiled), the clock starts: it SIGKILLs a random worker that is training a trial every
``--kill-every`` seconds (a random time in that range) and, once, half-way through,
stops the database (``pg_ctl -m fast``: every
connection is cut) and starts it again ``--outage`` seconds later.

The budget grows in rounds: round r gives the workers ``--max-trials`` = r x
``--round-trials``; they stop by themselves when the study holds that many finished
trials, and the next round starts them with the next budget, until the time is up (the
last round is then finished without kills).  After every round and at the end it checks:

- exactly the budget finished (COMPLETE + PRUNED), never more;
- no configuration lost: every configuration that was sampled (a lineage: a trial and
  the retries queued for it, which carry ``failed_trial``) has a finished trial, unless
  it was dropped by the retry cap (its worker died ``MAX_RETRIES`` + 1 times; listed);
- no configuration run twice: no lineage has two finished trials;
- every FAIL has a ``stop_reason``; no trial is left RUNNING or WAITING.

It prints a summary (kills, restarts, finished, lost, duplicated, ...) and exits 1 if a
check failed, keeping the workers' logs (their folder is printed).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ["--space", "lab-mlp", "--epochs", "1", "--train-size", "600", "--val-size", "500",
            "--sampler", "random", "--pruner", "median", "--seed", "0"]
STUDY = "soak"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long the chaos lasts "
                   "(default 10)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--round-trials", type=int, default=80,
                   help="finished trials added to the budget per round (default 80)")
    p.add_argument("--kill-every", type=float, nargs=2, default=(4.0, 12.0),
                   metavar=("MIN", "MAX"), help="seconds between SIGKILLs (default 4 12)")
    p.add_argument("--outage", type=float, default=3.0,
                   help="seconds the database stays down (default 3)")
    p.add_argument("--heartbeat", type=int, default=2, help="workers' heartbeat (default 2 s)")
    p.add_argument("--seed", type=int, default=0, help="seeds the kills (default 0)")
    p.add_argument("--keep", action="store_true", help="keep the workers' logs")
    return p.parse_args(argv)


def _env(url: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", MINIDL_NUM_THREADS="1")
    env["OPTUNA_STORAGE"] = url          # the URL goes to workers in their environment
    return env


class Workers:
    """``n`` worker processes with the same budget; dead ones are restarted by ``tend``."""

    def __init__(self, n, url, logs: Path, heartbeat: int):
        self.n, self.url, self.logs, self.heartbeat = n, url, logs, heartbeat
        self.procs = [None] * n
        self.budget = None
        self.started = 0
        self.exits = {}            # exit status -> count (-9: killed)

    def start(self, rank: int) -> None:
        log = open(self.logs / f"w{rank}.log", "a")
        log.write(f"--- start (budget {self.budget}) at {time.strftime('%H:%M:%S')}\n")
        log.flush()
        self.procs[rank] = subprocess.Popen(
            [sys.executable, "-m", "tuning", "worker", "--study-name", STUDY, "--max-trials",
             str(self.budget), "--heartbeat", str(self.heartbeat), "--threads", "1",
             "--quiet", "--rank", str(rank)], cwd=self.logs, env=_env(self.url),
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.started += 1

    def tend(self, restart: bool) -> int:
        """Note the workers that ended; restart those that did not end by themselves
        (status 0: the budget is done).  Returns how many still run."""
        running = 0
        for rank, proc in enumerate(self.procs):
            if proc is None:
                continue
            code = proc.poll()
            if code is None:
                running += 1
                continue
            self.exits[code] = self.exits.get(code, 0) + 1
            self.procs[rank] = None
            if code != 0 and restart:
                self.start(rank)
                running += 1
        return running

    def alive(self) -> list:
        return [p for p in self.procs if p is not None and p.poll() is None]

    def training(self, study) -> list:
        """The live workers that are training a trial now (its parameters sampled)."""
        from optuna.trial import TrialState  # noqa: PLC0415
        busy = {(t.user_attrs.get("worker") or {}).get("pid")
                for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if "config" in t.user_attrs}
        return [p for p in self.alive() if p.pid in busy]

    def stop_all(self) -> None:
        for p in self.alive():
            p.send_signal(signal.SIGKILL)
        for p in self.procs:
            if p is not None:
                p.wait()


def check(study, budget: int, max_retries: int) -> dict:
    """The soak's checks on the study (see the module docstring)."""
    from optuna.trial import TrialState  # noqa: PLC0415
    finished_states = (TrialState.COMPLETE, TrialState.PRUNED)
    trials = study.get_trials(deepcopy=False)
    lineages = {}
    for t in trials:
        lineages.setdefault(t.system_attrs.get("failed_trial", t.number), []).append(t)
    finished = [t for t in trials if t.state in finished_states]
    duplicated, lost, dropped = [], [], []
    for origin, members in sorted(lineages.items()):
        done = [t for t in members if t.state in finished_states]
        if len(done) > 1:
            duplicated.append(origin)
        if done:
            continue
        sampled = any(t.params or t.system_attrs.get("fixed_params") for t in members)
        if not sampled:        # lost its claim before sampling: nothing to run again
            continue
        counted = max((len(t.system_attrs.get("counted_failures", [])) for t in members),
                      default=0)
        deaths = sum(str(t.user_attrs.get("stop_reason", "")).startswith("worker died")
                     for t in members)
        if max(counted, deaths) > max_retries and \
                not [t for t in members if t.state == TrialState.WAITING]:
            dropped.append(origin)
        else:
            lost.append(origin)
    fails = [t for t in trials if t.state == TrialState.FAIL]
    no_reason = [t.number for t in fails if not t.user_attrs.get("stop_reason")]
    left = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    reasons = {}
    for t in fails:
        key = str(t.user_attrs.get("stop_reason", "")).split(":", 1)[0] or "(none)"
        if key == "worker died":
            key += ": no heartbeat" if "no heartbeat" in t.user_attrs["stop_reason"] else \
                ": process gone"
        reasons[key] = reasons.get(key, 0) + 1
    return {"trials": len(trials), "finished": len(finished), "budget": budget,
            "complete": sum(t.state == TrialState.COMPLETE for t in trials),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "failed": len(fails), "fail_reasons": reasons, "lost": lost,
            "duplicated": duplicated, "dropped_by_cap": dropped, "no_reason": no_reason,
            "left_running_or_waiting": left,
            "ok": (len(finished) == budget and not lost and not duplicated and not no_reason
                   and not left)}


def main(argv=None) -> int:
    args = parse_args(argv)
    from benchmarks.pgserver import PostgresServer, available  # noqa: PLC0415
    why = available()
    if why:
        print(f"soak: cannot start PostgreSQL: {why}", file=sys.stderr)
        return 2
    import optuna  # noqa: PLC0415
    from tuning import workers as tuning_workers  # noqa: PLC0415
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rng = random.Random(args.seed)
    logs = Path(tempfile.mkdtemp(prefix="minidl-soak-"))
    ok = False
    with PostgresServer() as pg:
        url = pg.url
        made = subprocess.run([sys.executable, "-m", "tuning", "create", "--study-name", STUDY,
                               *SETTINGS], cwd=logs, env=_env(url), capture_output=True,
                              text=True, timeout=300)
        if made.returncode != 0:
            print(made.stdout + made.stderr, file=sys.stderr)
            return 1
        print(f"soak: {args.workers} workers on {url} for {args.minutes:g} min; logs in {logs}",
              flush=True)
        pool = Workers(args.workers, url, logs, args.heartbeat)
        watch = optuna.load_study(study_name=STUDY, storage=url)
        kills = restarts = rounds = 0
        round_checks = []
        start = time.monotonic()
        end = outage_at = next_kill = None     # the clock starts with the first trial
        chaos = True
        while True:
            rounds += 1
            pool.budget = rounds * args.round_trials
            for rank in range(args.workers):
                pool.start(rank)
            while pool.tend(restart=True):
                now = time.monotonic()
                if end is None:
                    if not any(t.state.is_finished() for t in watch.get_trials(deepcopy=False)):
                        time.sleep(0.5)
                        continue
                    start, end = now, now + 60 * args.minutes   # the workers are warm
                    outage_at = now + 30 * args.minutes
                    next_kill = now + rng.uniform(*args.kill_every)
                    print(f"soak: the first trial finished; {args.minutes:g} min of kills "
                          f"from now", flush=True)
                if chaos and now >= end:
                    chaos = False
                    print(f"soak: [{now - start:5.0f}s] time is up; round {rounds} finishes "
                          f"without kills", flush=True)
                # the outage once, half-way, while workers train (at most 15 s later)
                busy = len(pool.training(watch)) if chaos and restarts == 0 and \
                    now >= outage_at else 0
                if chaos and restarts == 0 and now >= outage_at and \
                        (busy >= 1 or now >= outage_at + 15):
                    print(f"soak: [{now - start:5.0f}s] database stopped ({busy} workers "
                          f"training)", flush=True)
                    pg.stop("fast")
                    time.sleep(args.outage)
                    pg.start()
                    watch = optuna.load_study(study_name=STUDY, storage=url)  # new connections
                    restarts += 1
                    print(f"soak: [{time.monotonic() - start:5.0f}s] database started again",
                          flush=True)
                if chaos and now >= next_kill:
                    # a worker in the middle of a trial (a kill at start-up tests nothing);
                    # none training now: try again in a second
                    training = pool.training(watch)
                    if training:
                        rng.choice(training).send_signal(signal.SIGKILL)
                        kills += 1
                        next_kill = now + rng.uniform(*args.kill_every)
                    else:
                        next_kill = now + 1.0
                time.sleep(0.2)
            study = optuna.load_study(study_name=STUDY, storage=url)
            result = check(study, pool.budget, tuning_workers.MAX_RETRIES)
            round_checks.append(result["ok"])
            print(f"soak: [{time.monotonic() - start:5.0f}s] round {rounds}: budget "
                  f"{pool.budget}, finished {result['finished']}, failed {result['failed']}, "
                  f"kills so far {kills}; checks {'ok' if result['ok'] else 'FAILED'}",
                  flush=True)
            if not chaos:
                break
        pool.stop_all()
        elapsed = time.monotonic() - start   # from the first finished trial
        ok = result["ok"] and all(round_checks)
        print()
        print("soak summary")
        print(f"  duration            {elapsed / 60:.1f} min after warm-up ({rounds} rounds of "
              f"{args.round_trials} trials, {args.workers} workers)")
        print(f"  SIGKILLs            {kills}")
        print(f"  database restarts   {restarts}")
        print(f"  worker starts       {pool.started}  (exits by status: "
              f"{dict(sorted(pool.exits.items()))}; -9 killed, 1 storage failure, 0 done)")
        print(f"  budget              {result['budget']}")
        print(f"  finished            {result['finished']}  (complete {result['complete']}, "
              f"pruned {result['pruned']})")
        print(f"  failed              {result['failed']}  {result['fail_reasons']}")
        print(f"  FAIL without reason {len(result['no_reason'])}")
        print(f"  lost                {len(result['lost'])}  {result['lost'] or ''}")
        print(f"  duplicated          {len(result['duplicated'])}  {result['duplicated'] or ''}")
        print(f"  dropped by the cap  {len(result['dropped_by_cap'])}  "
              f"{result['dropped_by_cap'] or ''}")
        print(f"  left RUNNING/WAITING {len(result['left_running_or_waiting'])}")
        print(f"  every round checked {'ok' if all(round_checks) else 'FAILED'}")
        print(f"result: {'PASS' if ok else 'FAIL'}")
    if ok and not args.keep:
        shutil.rmtree(logs, ignore_errors=True)
    else:
        print(f"worker logs: {logs}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
