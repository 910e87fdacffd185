# `make demo` and `make test` each install what they need first (Debian
# packages and the Python package with its dependencies), then run.
PYTHON ?= python3
APT_PACKAGES = nftables conntrack iproute2 curl procps nginx dnsutils

.PHONY: deps demo test unit e2e lint bench clean

deps:
	@# Debian packages: installed when any of them is missing (dpkg knows, not a guess from commands)
	@dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); }
	@# kubectl for the e2e tests (tests/e2e/test_kubectl.py): the machine's own package, else Debian's
	@command -v kubectl >/dev/null || { apt-get update -qq && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl \
		|| DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client; }; }
	$(PYTHON) -m pip install -q -e '.[dev]'

demo: deps
	./scripts/demo.sh

test: deps lint
	$(PYTHON) -m pytest -q tests

unit: deps
	$(PYTHON) -m pytest -q tests/unit

e2e: deps
	$(PYTHON) -m pytest -q tests/e2e

lint:
	$(PYTHON) -m ruff check src tests bench
	$(PYTHON) -m mypy

bench: deps
	$(PYTHON) bench/lab_scale.py

clean:
	-podnet down --name demo
