# voice-agent: every target sets up what it needs by itself, idempotently. A second call is fast.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.setup-done
TEST_DATA_STAMP := .test-data/.fetched
APT_PKGS := python3-venv espeak-ng sox libportaudio2 libasound2-plugins alsa-utils mosquitto mosquitto-clients systemd iproute2 util-linux openssl
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help setup sysdeps run test test-data bench install doctor clean

help:
	@echo "make run     start the appliance on its embedded defaults (sets everything up first)"
	@echo "make test    run the test suite (sets everything up first)"
	@echo "make bench   latency/CPU/memory benchmark against Home Assistant's Wyoming services"
	@echo "             (BENCH_ARGS='--quick --json' for a short run, '--vad-sweep --llm-sweep' for more)"
	@echo "make install install package, config and systemd units (DESTDIR=/scratch to stage)"

setup: sysdeps $(STAMP)

sysdeps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "==> installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml models/manifest.toml
	@echo "==> creating the virtual environment in $(VENV)"
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@echo "==> installing voice-agent and its Python dependencies (with the test and benchmark extras)"
	@$(PY) -m pip install -q -e '.[test,bench]'
	@echo "==> installing and verifying the model packages (models/manifest.toml)"
	@$(PY) -m voice_agent.models install
	@touch $(STAMP)

run: setup
	$(VENV)/bin/voice-agent run --private-broker

# Recordings the tests read, from pinned PyPI wheels (tests/support/testdata.py): fetched here, never during the run.
test-data: setup $(TEST_DATA_STAMP)

$(TEST_DATA_STAMP): tests/support/testdata.py
	@echo "==> fetching test recordings (tests/support/testdata.py)"
	@$(PY) -m tests.support.testdata fetch
	@touch $@

test: setup test-data
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/voice-agent bench $(BENCH_ARGS)

doctor: setup
	$(VENV)/bin/voice-agent doctor

install: setup
	$(PY) -m voice_agent.install --destdir "$(DESTDIR)"

clean:
	rm -rf $(VENV) build *.egg-info .test-data
