# Two commands do everything on a fresh machine:
#   make tune   set up, fetch Fashion-MNIST, run a 20-trial lab-mlp study, report and plot
#   make test   set up (with torch for parity) and run the whole test suite
#   make docs   rebuild and execute the tutorial notebooks (docs/tutorials)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(VENV)/bin/pip
TORCH  ?= torch==2.13.0

.PHONY: tune test test-notorch venv venv-test data clean bench docs soak mutation

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed
venv-test: $(VENV)/.installed-test

# Finds Fashion-MNIST (explicit dir, $$MINIDL_DATA, cache, Debian package, torchvision
# layout); installs the Debian package when nothing is found and apt-get is usable.
data: venv
	$(PY) -m minidl.data.fetch

tune: data
	$(PY) -m tuning run --space lab-mlp --total 20 --study-name lab-mlp-demo
	$(PY) -m tuning plot --study-name lab-mlp-demo --out studies/lab-mlp-demo-plots

test: venv-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The promise "runs without PyTorch": the suite in a second environment that has no torch;
# every torch test skips with its reason, everything else must pass (CI runs this too).
NOTORCH = .venv-notorch
$(NOTORCH)/.installed: pyproject.toml
	$(PYTHON) -m venv $(NOTORCH)
	$(NOTORCH)/bin/pip install -q --upgrade pip
	$(NOTORCH)/bin/pip install -q -e ".[test]"
	touch $@

test-notorch: $(NOTORCH)/.installed
	@! $(NOTORCH)/bin/python -c "import torch" 2>/dev/null || { echo "torch is installed in $(NOTORCH)"; exit 1; }
	MINIDL_REQUIRE_TORCH= $(NOTORCH)/bin/python -m pytest -q $(PYTEST_ARGS)

# Rebuild every tutorial notebook (docs/tutorials/src/*.py -> docs/tutorials/*.ipynb) and
# execute it on the full data, so the committed notebooks carry their outputs.
docs: venv-test
	$(PY) -m minidl.data.fetch
	$(PY) docs/tutorials/build.py

bench: venv-test
	$(PY) -m benchmarks.training
	$(PY) -m benchmarks.kernels
	$(PY) -m benchmarks.parity

clean:
	rm -rf $(VENV) $(NOTORCH) studies .pytest_cache

# Not in the test suite: 4 workers on a throwaway PostgreSQL for 10 minutes with random
# SIGKILLs and one database restart, then exactly-the-budget / nothing lost or run twice /
# every FAIL with a reason (benchmarks/soak.py; SOAK_ARGS="--minutes 1" for a quick proof).
soak: venv-test
	$(PY) -m minidl.data.fetch
	$(PY) -m benchmarks.soak $(SOAK_ARGS)

# Mutation testing of the failure-handling code (journal storage, URL rendering, workers,
# model loading; see [tool.mutmut] in pyproject.toml). Not part of CI: it takes most of an
# hour on 2 cores. Survivors: `.venv/bin/mutmut results`, one: `.venv/bin/mutmut show NAME`.
mutation: venv-test
	$(PIP) install -q "mutmut==3.8.1"
	rm -rf mutants
	MINIDL_REQUIRE_POSTGRES=1 $(VENV)/bin/mutmut run > mutants.log 2>&1 || { tail -20 mutants.log; exit 1; }
	$(PY) tools/mutation_score.py
