# make test   install what is missing, then run the whole suite
# make sim    run the meter firmware on the simulated board with a real broker
#             make sim SCENARIO=day   make sim INTERACTIVE=1   make sim PNG=lcd-shots
# make bench  print the benchmark figures
# make screenshots   the console's pictures in docs/img, from the browser test
# make ram32 MPY_SRC=DIR   build a 32-bit unix port with the app frozen in, print its RAM figures
VENV := .venv
PY := $(VENV)/bin/python
SCENARIO ?= day
JOBS ?= 2

.PHONY: setup test sim bench lint clean ram32 screenshots

setup:
	@tools/bootstrap.sh

test: setup
	$(VENV)/bin/pytest -n $(JOBS) -q

sim: setup
	$(PY) tools/sim.py $(SCENARIO) $(if $(INTERACTIVE),--interactive) $(if $(SPEED),--speed $(SPEED)) $(if $(PNG),--png $(PNG))

bench: setup
	@# benches that say they run in the unix port get micropython, the others CPython
	@for b in bench/bench_*.py; do echo "== $$b"; \
	  if head -8 $$b | grep -q "bin/micropython bench/"; then \
	    MICROPYPATH=.frozen:firmware:.:tests/mp:build/lib $(VENV)/bin/micropython $$b || exit 1; \
	  else $(PY) $$b || exit 1; fi; done

screenshots: setup
	CONSOLE_SHOTS=docs/img $(VENV)/bin/pytest -p no:xdist -q tests/host/test_console_browser.py

ram32: setup
	@test -n "$(MPY_SRC)" || { echo 'make ram32 MPY_SRC=/path/to/micropython (v1.28.0 source tree)'; exit 2; }
	tools/ram32.sh $(MPY_SRC)

lint: setup
	$(VENV)/bin/ruff check tools utility

clean:
	rm -rf build sim-state .pytest_cache
