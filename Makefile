# Two commands do all set-up: `make demo` and `make test`. Each bootstraps uv into .tools/
# (if no uv is on PATH) and the project's .venv from uv.lock; nothing else is installed.

UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --frozen --all-extras

.PHONY: demo test lint format airflow backfill runs report stack-up stack-down requirements clean

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --all-extras
	@touch $@

demo: .venv/.synced  ## the main job on the embedded stack
	$(RUN) python -m bionicpro_stack.demo

# The suite on pytest-xdist workers, one per core (at most 4), each with its own stack; which
# tests share a worker: tests/conftest.py. PYTEST_ARGS="-n 0" runs it in this one process.
test: .venv/.synced  ## the whole test suite
	$(RUN) pytest --numprocesses auto --maxprocesses 4 $(PYTEST_ARGS)

lint: .venv/.synced
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: .venv/.synced
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

airflow: .venv/.synced  ## Airflow UI (airflow standalone) on the embedded stack
	$(RUN) python -m bionicpro_stack airflow standalone

backfill: .venv/.synced  ## every report day FROM..TO through Airflow: make backfill FROM=2024-01-01 TO=2024-01-07
	$(RUN) python -m bionicpro_stack backfill $(FROM) $(TO)

runs: .venv/.synced  ## the run log's latest runs
	$(RUN) python -m bionicpro_stack runs

# USER is also the login name in the environment: only a USER given on the command line counts.
REPORT_USER = $(if $(filter command line,$(origin USER)),$(USER))
report: .venv/.synced  ## one user's month as an HTML page of charts: make report USER=123 MONTH=2026-11
	$(if $(REPORT_USER),,$(error usage: make report USER=<user id> [MONTH=YYYY-MM]))
	$(RUN) python -m bionicpro_stack report $(REPORT_USER) $(MONTH)

stack-up: .venv/.synced
	$(RUN) python -m bionicpro_stack up

stack-down: .venv/.synced
	$(RUN) python -m bionicpro_stack down

ddl: .venv/.synced  ## the mart's DDL for a ClickHouse cluster: make ddl CLUSTER=name
	$(RUN) python -m bionicpro_etl.schema $(CLUSTER)

docs: .venv/.synced  ## the tables of docs/ that code describes (mart columns, settings)
	$(RUN) python -m bionicpro_stack.docs

.PHONY: bench ddl docs
bench: .venv/.synced  ## benchmark of one report day (SMALL=1: a one-minute size); never part of test
	$(RUN) python -m bionicpro_stack.bench $(BENCH_ARGS)

requirements: .venv/.synced  ## requirements.txt from the lock file
	$(UV) export --frozen --all-extras --no-dev --no-hashes -o requirements.txt

clean: stack-down
	rm -rf .stack
