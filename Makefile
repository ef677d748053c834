# The two commands: `make run` (the whole system locally) and `make test`.
.PHONY: setup run test test-fast stop bench clean lock

setup:
	@bash deploy/local/bootstrap.sh

# Python keeps the bytecode of what it compiles (__pycache__, ignored by git)
# even where the environment says otherwise: every test process and service
# would compile the whole project from source again (make test-fast: 80 s
# against 70 s on two idle cores).
unexport PYTHONDONTWRITEBYTECODE

run: setup
	.venv/bin/kezek run

stop:
	@.venv/bin/kezek stop

# Chromium tests run in processes of their own: Playwright's sync API leaves
# an event loop running in the main thread, which breaks every later
# asyncio.run() in the same process. Each part runs in two worker processes,
# a test file in one of them (its module fixtures start once); each worker
# starts the servers its tests need on its own ports and folders, as two
# runs on one machine would.
test: setup
	.venv/bin/python -m pytest -n 2 --dist loadfile --ignore=tests/browser $(PYTEST_ARGS)
	.venv/bin/python -m pytest -n 2 --dist loadfile tests/browser $(PYTEST_ARGS)

# The pure and SQLite tests, in two processes: no Kafka, Temporal, PostgreSQL
# nor Chromium. A test that starts a server is marked `integration` (by the
# fixture that starts it, tests/conftest.py, or by hand where it starts one
# itself) and runs only in `make test`.
test-fast: setup
	.venv/bin/python -m pytest -n 2 -m "not integration" --ignore=tests/browser $(PYTEST_ARGS)

bench: setup
	.venv/bin/python bench/allocation.py --children 100000 --kindergartens 1200 --places 5000

# Pins the runtime dependencies with hashes for the image (deploy/requirements.lock).
lock:
	@bash deploy/lock.sh

clean:
	rm -rf var .pytest_cache
