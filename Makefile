# Two commands for a new user: `make demo` (the local pipeline on the bundled data, then a served
# forecast) and `make test` (the whole offline suite). Each installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# The environments are independent: built side by side (pip's installs run on one core each).
MAKEFLAGS += --jobs=3

.PHONY: demo test bench install clean

# --no-compile: Python compiles the modules it imports on first use; compiling every installed module
# up front took most of the install's time (about 120 of 170 s on 2 cores).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e '.[serve,train,watch,client,lambdas,infra,dev]'
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(CHECKOV_STAMP): tests/infra/checkov-requirements.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet -r tests/infra/checkov-requirements.txt
	touch $(CHECKOV_STAMP)

install: $(STAMP) $(NODE_STAMP) $(CHECKOV_STAMP)

demo: $(STAMP)
	$(VENV)/bin/forecast-mlops demo

test: $(STAMP) $(NODE_STAMP) $(CHECKOV_STAMP)
	$(PY) -m pytest

bench: $(STAMP) $(NODE_STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) node_modules $(CHECKOV_VENV) cdk.out
