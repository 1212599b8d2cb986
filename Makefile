# Two commands do all set-up on a fresh machine: `make bench` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-core
PIP    := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: bench test test-fast speed clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	touch $@

bench: $(STAMP)
	$(VENV)/bin/xmodal bench flickr8k

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

speed: $(STAMP)
	$(PY) benchmarks/speed.py

clean:
	rm -rf $(VENV) .cache .pytest_cache
