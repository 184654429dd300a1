# make test   install what is missing, then run the whole suite
# make sim    run the meter firmware on the simulated board with a real broker
#             make sim SCENARIO=day   make sim INTERACTIVE=1
# make bench  print the benchmark figures
VENV := .venv
PY := $(VENV)/bin/python
SCENARIO ?= day
JOBS ?= 2

.PHONY: setup test sim bench lint clean

setup:
	@tools/bootstrap.sh

test: setup
	$(VENV)/bin/pytest -n $(JOBS) -q

sim: setup
	$(PY) tools/sim.py $(SCENARIO) $(if $(INTERACTIVE),--interactive) $(if $(SPEED),--speed $(SPEED))

bench: setup
	@# benches that say they run in the unix port get micropython, the others CPython
	@for b in bench/bench_*.py; do echo "== $$b"; \
	  if head -8 $$b | grep -q "bin/micropython bench/"; then \
	    MICROPYPATH=.frozen:firmware:.:tests/mp:build/lib $(VENV)/bin/micropython $$b || exit 1; \
	  else $(PY) $$b || exit 1; fi; done

lint: setup
	$(VENV)/bin/ruff check tools

clean:
	rm -rf build sim-state .pytest_cache
