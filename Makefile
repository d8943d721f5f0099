# The contract: `make demo` and `make test` work on a fresh Debian machine (root or sudo).
SHELL := /bin/bash
VENV := .venv
TESTBED := $(VENV)/bin/testbed
KERNELS := $(shell sed -n 's/^kernel: *//p' images/linux/*.yaml)
KERNEL_N := $(shell sed -n 's/^kernel: *//p' images/linux/debian12-kernel-n.yaml)
CANDIDATES := build/candidates
PRODUCTS := build/products
SENSOR_SOURCES := $(wildcard samples/linux-sensor/*.py samples/linux-sensor/*.sh samples/linux-sensor/module/*)
DLP_SOURCES := $(wildcard samples/linux-dlp/*.py samples/linux-dlp/*.sh samples/linux-dlp/module/*) $(SENSOR_SOURCES)
NETGUARD_SOURCES := $(wildcard samples/linux-netguard/*.py samples/linux-netguard/*.sh samples/linux-netguard/module/*) $(SENSOR_SOURCES)

.PHONY: setup images candidates demo incidents test unit integration lint bench clean

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

# The incidents of the record (examples/incidents.yaml): one release that carries them all -- sensor
# 1.1.0 beside the fleet's 1.0.0, content "incidents", kernel profiles for kernel N only -- and the
# two co-installed products of the record.
$(CANDIDATES)/incidents/candidate.yaml: $(SENSOR_SOURCES) images/linux/*.yaml | setup
	@$(VENV)/bin/python samples/linux-sensor/build_candidate.py --out $(CANDIDATES)/incidents -q \
		$(addprefix --kernel ,$(KERNELS)) --tested-kernel $(KERNEL_N) \
		--sensor-version 1.1.0 --sensor-version 1.0.0 --content incidents
$(PRODUCTS)/dlp-agent/product.yaml: $(DLP_SOURCES) images/linux/*.yaml | setup
	@$(VENV)/bin/python samples/linux-dlp/build_product.py --out $(PRODUCTS)/dlp-agent -q $(addprefix --kernel ,$(KERNELS))
$(PRODUCTS)/netguard/product.yaml: $(NETGUARD_SOURCES) images/linux/*.yaml | setup
	@$(VENV)/bin/python samples/linux-netguard/build_product.py --out $(PRODUCTS)/netguard -q $(addprefix --kernel ,$(KERNELS))

incidents: images $(CANDIDATES)/incidents/candidate.yaml $(PRODUCTS)/dlp-agent/product.yaml $(PRODUCTS)/netguard/product.yaml
	@scripts/incidents.sh

lint: setup
	@$(VENV)/bin/ruff check orchestrator api tests bench samples
	@$(VENV)/bin/mypy

unit: setup
	@$(VENV)/bin/pytest -m unit -q

# Workers in parallel, a module per worker: the host's slots (a host-wide lease, one per core)
# decide how many guests run at once, and the workers keep them busy while others wait for a guest.
# Every real-guest module starts at once, in a worker of its own (8 workers, modules in collection
# order: they take longest); the other workers run the rest. What restarts libvirtd runs alone,
# after the rest. (Three guests on two cores was tried: a starved vCPU panicked a good candidate's
# guest with an RCU stall. The testbed never overloads its own host.)
test: lint images
	@$(VENV)/bin/pytest -q -n 8 --dist loadfile --no-loadscope-reorder -m "not exclusive" --durations 25 \
		tests/integration tests/api tests/browser tests/unit
	@$(VENV)/bin/pytest -q -m exclusive

bench: images candidates
	@$(VENV)/bin/python bench/bench_gate.py --candidate $(CANDIDATES)/good
	@$(VENV)/bin/python bench/bench_parser.py
	@$(VENV)/bin/python bench/bench_fail_fast.py --candidate $(CANDIDATES)/zero-filled

clean:
	rm -rf build
