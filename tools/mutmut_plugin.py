"""pytest plugin for ``make mutation`` only (never loaded by the normal test run).

mutmut first runs the tests once in "stats" mode to learn which tests reach which
function; the tests that start ``python -m tuning`` subprocesses would make those
subprocesses try to record such statistics too, from a temporary working directory
where mutmut finds no configuration, and fail.  This plugin starts subprocesses of the
stats run without the marker, so they run the original code.  While a mutant is tested,
subprocesses keep the marker and run the mutant, as the test process does.
"""
import os
import subprocess

_popen_init = subprocess.Popen.__init__


def _init(self, *args, **kwargs):
    env = kwargs.get("env")
    env = dict(os.environ if env is None else env)
    if env.get("MUTANT_UNDER_TEST") == "stats":
        del env["MUTANT_UNDER_TEST"]
        kwargs["env"] = env
    _popen_init(self, *args, **kwargs)


subprocess.Popen.__init__ = _init
