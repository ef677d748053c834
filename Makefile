# The two commands: `make run` (the whole system locally) and `make test`.
.PHONY: setup run test stop bench clean

setup:
	@bash deploy/local/bootstrap.sh

run: setup
	.venv/bin/kezek run

stop:
	@.venv/bin/kezek stop

test: setup
	.venv/bin/python -m pytest $(PYTEST_ARGS)

bench: setup
	.venv/bin/python bench/allocation.py --children 100000 --kindergartens 1200 --places 5000

clean:
	rm -rf var .pytest_cache
