# The two commands: `make run` (the whole system locally) and `make test`.
.PHONY: setup run test stop bench clean lock

setup:
	@bash deploy/local/bootstrap.sh

run: setup
	.venv/bin/kezek run

stop:
	@.venv/bin/kezek stop

# Chromium tests run in a process of their own: Playwright's sync API leaves
# an event loop running in the main thread, which breaks every later
# asyncio.run() in the same process.
test: setup
	.venv/bin/python -m pytest --ignore=tests/browser $(PYTEST_ARGS)
	.venv/bin/python -m pytest tests/browser $(PYTEST_ARGS)

bench: setup
	.venv/bin/python bench/allocation.py --children 100000 --kindergartens 1200 --places 5000

# Pins the runtime dependencies with hashes for the image (deploy/requirements.lock).
lock:
	@bash deploy/lock.sh

clean:
	rm -rf var .pytest_cache
