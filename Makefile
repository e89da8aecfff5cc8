# People and CI use the same targets. Everything runs from a local virtual environment that the
# first target needing it creates by itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help demo test test-postgresql lint typecheck bench check wheel clean install uninstall reliability soak

help:
	@echo "make demo       run the pipeline on a generated demo calendar (no account needed)"
	@echo "make test       run the test suite (its scenarios then again with the state in PostgreSQL)"
	@echo "make lint       ruff (lint and format check)"
	@echo "make typecheck  mypy --strict on recruitmail (contracts, daemon/, connectors/)"
	@echo "make bench      print the benchmark figures"
	@echo "make reliability  kills, injected faults, hostile input (short; make soak is long)"
	@echo "make wheel      build the wheel into dist/"
	@echo "make install    install as a system service under /opt/recruitmail (root)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m recruitmail.daemon.demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-postgresql

# Everything that replays scenarios through the executor (every end-to-end pair, the executor's
# own tests, the crash and fault chains) once more with the state in PostgreSQL: each scenario a
# fresh database of the server the tests start (tests/postgres.py). The planner is pure, and the
# state's own tests run on both backends in the first run. The chains are sized down here (the
# same code path at fewer kills and faults); `make soak` sizes them up, on either backend.
POSTGRESQL_SUITE := tests/test_executor_edges.py tests/test_executor_pipeline.py \
	tests/test_e2e_default.py tests/test_e2e_microsoft.py tests/test_e2e_google.py \
	tests/test_e2e_caldav_imap.py tests/test_cross_provider.py \
	tests/reliability/test_crash_consistency.py tests/reliability/test_faults.py \
	tests/reliability/test_connector_faults.py

test-postgresql: $(STAMP)
	RECRUITMAIL_TEST_STATE=postgresql RELIABILITY_KILLS=$${RELIABILITY_KILLS:-120} \
	RELIABILITY_FAULTS=$${RELIABILITY_FAULTS:-1000} $(BIN)/python -m pytest $(POSTGRESQL_SUITE)

lint: $(STAMP)
	$(BIN)/ruff check recruitmail daemon connectors tests bench
	$(BIN)/ruff format --check recruitmail daemon connectors tests bench

# mypy cannot follow the editable install's folder mapping (daemon/ is recruitmail.daemon, see
# [tool.setuptools.package-dir]); it reads build/typecheck/recruitmail/, a tree of symbolic links
# laid out as the wheel installs the package, made afresh from the mapping each time.
typecheck: $(STAMP)
	rm -rf build/typecheck
	$(BIN)/python -c 'import pathlib, tomllib; \
	    tree = pathlib.Path("build/typecheck"); \
	    dirs = tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]["package-dir"]; \
	    [(tree / name.replace(".", "/")).mkdir(parents=True, exist_ok=True) for name in sorted(dirs)]; \
	    [(tree / name.replace(".", "/") / entry.name).symlink_to(entry.resolve()) \
	     for name, folder in dirs.items() for entry in pathlib.Path(folder).iterdir() \
	     if entry.name != "__pycache__" and not (tree / name.replace(".", "/") / entry.name).exists()]'
	cd build/typecheck && MYPYPATH=. $(abspath $(BIN))/mypy --config-file $(CURDIR)/pyproject.toml \
	    --cache-dir $(CURDIR)/.mypy_cache -p recruitmail

# The crash, fault and hostile-input suite (also part of `make test`); sizes from RELIABILITY_*.
reliability: $(STAMP)
	$(BIN)/python -m pytest -m reliability -rA -s tests/reliability

# The long version: 1,000 kills per connector, an hour of faults.
soak: $(STAMP)
	RELIABILITY_KILLS=$${RELIABILITY_KILLS:-4000} RELIABILITY_FAULTS=$${RELIABILITY_FAULTS:-100000} \
	RELIABILITY_FAULT_SECONDS=$${RELIABILITY_FAULT_SECONDS:-3600} RELIABILITY_EXAMPLES=$${RELIABILITY_EXAMPLES:-2000} \
	$(BIN)/python -m pytest -m reliability -rA -s -p no:cacheprovider tests/reliability

bench: $(STAMP)
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/once_pass.py
	$(BIN)/python bench/graph_idle.py
	$(BIN)/python bench/google_idle.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/hostile.py

wheel: $(STAMP)
	$(BIN)/python -m build --wheel --outdir dist .

install: wheel
	sh scripts/install.sh

uninstall:
	sh scripts/uninstall.sh

clean:
	rm -rf $(VENV) build dist *.egg-info demo-output .pytest_cache .mypy_cache .ruff_cache
