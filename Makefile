# Two entry points that work on a fresh machine: `make demo` and `make test`.
# Both create .venv if it is missing and install with pip (torch comes from the local disk;
# see DESIGN.md: do not use uv/poetry here).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-reverse lint install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgefer pipeline --data synthetic --arch msff_mobilenetv3 --targets openvino,onnx,trt --out runs/demo

PYTEST_OPTS := -q -x --durations=15

test: lint
	$(PY) -m pytest $(PYTEST_OPTS)

# The same suite with the test files in reverse order (and no cache from an earlier run): a test
# whose outcome depends on what ran before it (shared state, session fixtures) fails here. The
# fresh-venv install test (needs_index) shares no state with the others and costs minutes of pip:
# it runs once, in `make test`.
test-reverse: $(STAMP)
	$(PY) -m pytest $(PYTEST_OPTS) -p no:cacheprovider -m "not needs_index" $$(ls tests/test_*.py | sort -r)

# Lint and formatting: `make test` runs this first, so CI fails on an unformatted file.
# `ruff format edgefer tests benchmarks` fixes the formatting. The last line keeps the device side on
# the device's Python (3.8 on JetPack 5): ruff's py38 target, vermin, and run-time unions/generics.
lint: $(STAMP)
	$(VENV)/bin/ruff check edgefer tests benchmarks
	$(VENV)/bin/ruff format --check edgefer tests benchmarks
	$(PY) tests/lint_device_python.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
