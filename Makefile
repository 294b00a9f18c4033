# Two commands do all the set-up:  `make app` runs the demo, `make test` runs the test suite.
# Each creates .venv and installs what it needs the first time (torch comes from this machine's disk).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

$(STAMP): requirements.txt requirements-dev.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .   # core, playground: importable from anywhere
	touch $(STAMP)

# The browser test drives Debian's Chromium (Playwright's own browser download cannot work offline).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

.PHONY: install app test lint spaces-smoke space
install: $(STAMP)

# The shared folder of real photos beside this checkout, when there is one, gives the Invert tab its examples.
EXAMPLES ?= $(wildcard ../shared/data/faces)

app: $(STAMP)
	$(PY) demos/app.py $(if $(EXAMPLES),--examples $(EXAMPLES)) $(ARGS)

test: $(STAMP) $(CHROMIUM)
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check core playground demos tests benchmarks

# The Hugging Face Space snapshot (README.md, "Deploy as a Hugging Face Space"): make space DIR=../my-space
space: $(STAMP)
	@test -n "$(DIR)" || { echo "usage: make space DIR=FOLDER [ARGS=--replace]"; exit 2; }
	$(PY) -m core space export "$(DIR)" $(ARGS)

# The app installed and started exactly as Hugging Face Spaces does, one inversion through gradio_client (~10 min:
# a fresh venv; not part of `make test`, which CI's 90 minutes already fill).
spaces-smoke:
	.ci/spaces_smoke
