# Two commands for a new user: `make demo` (the local pipeline on the bundled data, then a served
# forecast) and `make test` (the whole offline suite). Each installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
COMPILED := $(VENV)/.compiled
NODE_STAMP := node_modules/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# The environments are independent: built side by side (pip's installs run on one core each).
MAKEFLAGS += --jobs=3

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e '.[serve,train,watch,client,lambdas,infra,dev]'
	touch $(STAMP)

# Bytecode is compiled here, on every core, instead of by pip on one (about 120 s on 2 cores). It must
# be written once: where PYTHONDONTWRITEBYTECODE is set (here, and by its timings on CI), Python never caches what it
# compiles, and every process (each job, server and test worker) compiles all it imports from source.
# Files that Python 2 or templates left in some packages do not compile, as with pip: `-qq` keeps quiet.
$(COMPILED): $(STAMP)
	$(PY) -m compileall -qq -j 0 $(VENV)/lib || true
	touch $(COMPILED)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(CHECKOV_STAMP): tests/infra/checkov-requirements.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet -r tests/infra/checkov-requirements.txt
	touch $(CHECKOV_STAMP)

install: $(COMPILED) $(NODE_STAMP) $(CHECKOV_STAMP)

demo: $(COMPILED)
	$(PY) -m compileall -q -j 0 pipeline_code
	$(VENV)/bin/forecast-mlops demo

# The project's own modules are compiled at each run (only what changed): see $(COMPILED).
test: $(COMPILED) $(NODE_STAMP) $(CHECKOV_STAMP)
	$(PY) -m compileall -q -j 0 pipeline_code stacks lambdas tests app.py
	$(PY) -m pytest

bench: $(COMPILED) $(NODE_STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) node_modules $(CHECKOV_VENV) cdk.out
