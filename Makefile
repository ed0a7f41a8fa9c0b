# ExFM platform. `make run` and `make test` set up .venv from the lock when needed (seconds when it
# is already there), then do their job. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.exfm-installed
UV_VERSION := $(shell grep '^uv==' constraints.txt | cut -d= -f3)
PYTEST_ARGS ?=
export DVC_NO_ANALYTICS := 1
export PYTHONDONTWRITEBYTECODE := 1

CHROMIUM := /usr/bin/chromium

AIRFLOW_HOME ?= $(CURDIR)/.airflow
AIRFLOW_PORT ?= 8080
# Seconds that running tasks get to finish after Ctrl-C before they are interrupted.
AIRFLOW_GRACE_S ?= 20

.PHONY: setup browser services run results results-quick test test-fast test-bench lint format bench lock clean airflow \
	stack

setup: $(STAMP)

# torch and uv come first through pip (pip takes the local CPU wheel of torch==2.13.0; uv would
# resolve a CUDA build), then uv installs the rest of the lock, keeping that torch.
$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install --quiet --disable-pip-version-check \
		torch==2.13.0 uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet -p $(BIN)/python -r requirements.txt -c constraints.txt
	$(BIN)/uv pip install --quiet -p $(BIN)/python --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# The whole pipeline on params.yaml (dvc.yaml): only what changed since the last run re-runs.
run: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro
	@$(BIN)/exfm pipeline summary

# The ExFM results (experiments/dvc.yaml): tune, ablation ladder, freshness gap, transfer scaling,
# amortization, the OBD ladder; the page is reports/experiments/results.html (~60 min on 2 cores).
results: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro experiments/dvc.yaml
	@echo "results: reports/experiments/results.html"

# The same set on the small settings of experiment.quick (a few minutes), into reports/experiments/quick.
results-quick: setup
	$(BIN)/exfm experiment all --quick

# First the bytecode of the venv's packages, compiled once (seconds when it is there): uv installs
# without it, and PYTHONDONTWRITEBYTECODE keeps it from being cached, so every process the tests
# start (Airflow's components and tasks, dvc, each stage) compiled what it imports from source.
# Files for other Pythons (torch's py312 test files) fail to compile: ignored.
# Then the suite as two pytest processes at once (tests/shards.py: about half of its time is
# waiting); with PYTEST_ARGS (a selection, -x, -k ...), one pytest process with them.
test: setup lint browser services
	@$(BIN)/python -m compileall -qq -j 0 \
		"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" || true
	$(if $(strip $(PYTEST_ARGS)),$(BIN)/python -m pytest --durations=30 $(PYTEST_ARGS),\
		$(BIN)/python -m tests.shards --durations=30)

# The unit tier, for the edit loop: in-process tests, nothing marked slow (under 2 minutes on 2
# cores). `make test` runs every tier (tests/cli, integration, airflow, e2e).
test-fast: setup
	$(BIN)/python -m pytest tests/unit -m "not slow" $(PYTEST_ARGS)

# The tests marked `bench`, which run a benchmark whole and which `make test` leaves out: the
# stack benchmark over 2 days, `make stack` then `make airflow` from nothing (5-6 minutes of both
# cores). Run them with a change to benchmarks/bench_stack.py or to either stack's launcher.
test-bench: setup browser services
	$(BIN)/python -m pytest -m bench --durations=30 $(PYTEST_ARGS)

# Debian's headless Chromium, for the drift report's end-to-end test (installed once).
browser:
	@test -x $(CHROMIUM) || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Debian's redis-server, the production stack's broker (`make stack`, tests/e2e/test_stack.py);
# PostgreSQL 15 comes with these machines (initdb, postgres).
services:
	@command -v redis-server >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }

# The production stack of docker/docker-compose.yaml without Docker (docker/stack.py): PostgreSQL,
# Redis, an S3 endpoint (moto, for MinIO) and Airflow with the CeleryExecutor, a default and two
# torch workers, all on 127.0.0.1, state in $(STACK_HOME); Ctrl-C stops all of it.
STACK_HOME ?= $(CURDIR)/.stack
stack: setup services
	@STACK_HOME=$(STACK_HOME) $(BIN)/python docker/stack.py $(STACK_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup services
	$(BIN)/python benchmarks/bench_world.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_das.py
	$(BIN)/python benchmarks/bench_checks.py
	$(BIN)/python benchmarks/bench_lineage.py
	$(BIN)/python benchmarks/bench_gate_noise.py  # ~55 min on 2 cores: 60 worlds
	$(BIN)/python benchmarks/bench_stack.py  # ~18 min: make stack and make airflow, 14 days each

# Airflow on 127.0.0.1:$(AIRFLOW_PORT) with this project's DAGs (LocalExecutor); Ctrl-C stops every
# process. Nothing listens beyond 127.0.0.1: `airflow standalone` is not used, since its scheduler
# and triggerer start Airflow's task log servers on every interface (Airflow 3.3 binds them to host
# "", with no option for it). Here they run with --skip-serve-logs, and the same log server app
# (the UI reads a running task's log from it) runs on 127.0.0.1 at [logging] worker_log_server_port
# (8793) and trigger_log_server_port (8794); task instances record the host 127.0.0.1
# (hostname_callable), where the API server then asks for those logs.
# Each component runs in its own session, so the terminal's Ctrl-C reaches only this shell, which
# stops them in order: the scheduler first (SIGTERM: it lets running tasks finish, and they need
# the API server), for at most AIRFLOW_GRACE_S seconds; then its process group gets SIGTERM (the
# task supervisors pass it to the tasks, which fail and are retried later), then the others get
# SIGTERM. Whatever outlives its SIGTERM by 10 s is killed with its whole session (a task runs in
# its own process group, not its own session). Ctrl-C again kills every session at once. If one
# component exits, the others are stopped too.
# The admin password is printed at every start (the API server prints it only when it makes it)
# and kept in $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated. umask 077, and
# 0600/0700 for the task logs (Airflow chmods some to 0664 otherwise): that file, the metadata
# database and the logs are readable by this user only. The ExFM console (plugins/: the reports,
# each run's summary) is in the UI's navigation and on each run.
AIRFLOW_LOG_SERVER := import sys, uvicorn; from airflow.configuration import conf; uvicorn.run( \
	"airflow.utils.serve_logs.log_server:get_app", factory=True, host="127.0.0.1", \
	port=conf.getint("logging", sys.argv[1]), log_config=None, access_log=False)
airflow: setup
	@export AIRFLOW_HOME=$(AIRFLOW_HOME) AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
		AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins \
		AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__EXECUTOR=LocalExecutor \
		AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager \
		AIRFLOW__CORE__HOSTNAME_CALLABLE=urllib.request.localhost \
		AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FILE_PERMISSIONS=0o600 \
		AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FOLDER_PERMISSIONS=0o700 \
		AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=$(AIRFLOW_PORT) AIRFLOW__CORE__PARALLELISM=4 \
		AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(AIRFLOW_PORT)/execution/ \
		EXFM_PARAMS=$${EXFM_PARAMS:-$(CURDIR)/params.yaml} PATH=$(CURDIR)/$(BIN):$$PATH; \
	umask 077 && airflow db migrate >/dev/null && \
	airflow pools set $$(exfm config get --params "$$EXFM_PARAMS" airflow.pool) \
		$$(exfm config get --params "$$EXFM_PARAMS" airflow.pool_slots) \
		"ExFM torch tasks" >/dev/null || exit; \
	pids=(); \
	gone() { for _ in $$(seq $$((2 * $$2))); do kill -0 $$1 2>/dev/null || return 0; sleep 0.5; \
		done; ! kill -0 $$1 2>/dev/null; }; \
	stop() { trap 'echo "airflow: killing every process" >&2; \
			pkill -KILL -s "$$(IFS=,; echo "$${pids[*]}")"' INT TERM HUP; \
		echo "airflow: stopping; running tasks have $(AIRFLOW_GRACE_S) s to finish" \
			"(Ctrl-C again kills everything now)" >&2; \
		kill -TERM $${pids[0]} 2>/dev/null; \
		if ! gone $${pids[0]} $(AIRFLOW_GRACE_S); then \
			echo "airflow: interrupting the running tasks (they fail, and are retried)" >&2; \
			kill -TERM -- -$${pids[0]} 2>/dev/null; gone $${pids[0]} 10 || pkill -KILL -s $${pids[0]}; fi; \
		kill -TERM "$${pids[@]}" 2>/dev/null; \
		for pid in "$${pids[@]}"; do gone $$pid 10 || pkill -KILL -s $$pid; done; \
		until wait; do :; done; }; \
	trap 'stop; exit 130' INT; trap 'stop; exit 143' TERM HUP; \
	echo "Airflow: http://127.0.0.1:$(AIRFLOW_PORT)  (Ctrl-C stops it)"; \
	for component in "scheduler --skip-serve-logs" api-server dag-processor \
		"triggerer --skip-serve-logs"; do setsid airflow $$component & pids+=($$!); done; \
	for port in worker_log_server_port trigger_log_server_port; do \
		setsid python -c '$(AIRFLOW_LOG_SERVER)' $$port & pids+=($$!); done; \
	passwords=$$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated; \
	for _ in {1..120}; do [ -s "$$passwords" ] && break; sleep 0.5; done; \
	python -c 'import json, sys; [print(f"Airflow login: {u} / {p}") for u, p in \
		json.load(open(sys.argv[1])).items()]' "$$passwords" || { stop; exit 1; }; \
	wait -n; echo "airflow: a component exited; stopping the others" >&2; stop; exit 1

# Regenerate the lock from a fresh venv built from requirements.txt alone.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet torch==2.13.0 uv
	.venv-lock/bin/uv pip install --quiet -p .venv-lock/bin/python -r requirements.txt
	{ echo "# The full lock: pip freeze --all --exclude-editable of a venv built from requirements.txt"; \
	  echo "# (regenerate with: make lock). torch is written as torch==2.13.0, never +cpu."; \
	  .venv-lock/bin/pip freeze --all --exclude-editable | grep -v '^pip==' \
	  | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/'; } > constraints.txt
	rm -rf .venv-lock

# Everything generated (venv, lakes, reports, caches); what git tracks stays, dvc.lock files
# included: with their outputs gone, the next `dvc repro` runs every stage again.
clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache .airflow .stack
	find reports -type f ! -name .gitignore -delete
	find reports -mindepth 1 -type d -empty -delete
