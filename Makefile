# Two entry points that work on a fresh machine: `make demo` and `make test`.
# Both create .venv if it is missing and install with pip (torch comes from the local disk;
# see DESIGN.md: do not use uv/poetry here).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgefer pipeline --data synthetic --model msff_mobilenetv3 --targets openvino,onnx,trt --out runs/demo

test: $(STAMP)
	$(VENV)/bin/ruff check edgefer tests
	$(PY) -m pytest -q -x --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check edgefer tests
	$(VENV)/bin/ruff format --check edgefer tests

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
