# The contract: `make demo` and `make test` work on a fresh Debian machine (root or sudo).
SHELL := /bin/bash
VENV := .venv
TESTBED := $(VENV)/bin/testbed
KERNELS := $(shell sed -n 's/^kernel: *//p' images/linux/*.yaml)
CANDIDATES := build/candidates
SENSOR_SOURCES := $(wildcard samples/linux-sensor/*.py samples/linux-sensor/*.sh samples/linux-sensor/module/*)

.PHONY: setup images candidates demo test unit integration lint bench clean

setup:
	@scripts/setup.sh

images: setup
	@$(TESTBED) images build

# The sample candidate, built against every image's kernel headers: good content, and the same
# sensor with zero-filled content of the same length (the July 2024 incident).
$(CANDIDATES)/good/candidate.yaml: $(SENSOR_SOURCES) images/linux/*.yaml | setup
	@$(VENV)/bin/python samples/linux-sensor/build_candidate.py --out $(CANDIDATES)/good $(addprefix --kernel ,$(KERNELS)) --content good
$(CANDIDATES)/zero-filled/candidate.yaml: $(SENSOR_SOURCES) images/linux/*.yaml | setup
	@$(VENV)/bin/python samples/linux-sensor/build_candidate.py --out $(CANDIDATES)/zero-filled $(addprefix --kernel ,$(KERNELS)) --content zero-filled

candidates: $(CANDIDATES)/good/candidate.yaml $(CANDIDATES)/zero-filled/candidate.yaml

demo: images candidates
	@scripts/demo.sh

lint: setup
	@$(VENV)/bin/ruff check orchestrator api tests bench samples
	@$(VENV)/bin/mypy

unit: setup
	@$(VENV)/bin/pytest -m unit -q

test: lint images
	@$(VENV)/bin/pytest -q

bench: images candidates
	@$(VENV)/bin/python bench/bench_gate.py --candidate $(CANDIDATES)/good
	@$(VENV)/bin/python bench/bench_parser.py
	@$(VENV)/bin/python bench/bench_fail_fast.py --candidate $(CANDIDATES)/zero-filled

clean:
	rm -rf build
