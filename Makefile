# Entry points for developers and CI. `make test` is the whole suite (README, .ci/run).
.PHONY: test setup lint sanity units pytest molecule lock build demo demo-down

test:
	bash tools/test.sh

# The local demo: deploy.yml over SSH against an EC2-like container (inventories/local).
demo:
	bash tools/demo.sh up
demo-down:
	bash tools/demo.sh down

setup:
	bash tools/test.sh setup
lint:
	bash tools/test.sh setup lint
sanity:
	bash tools/test.sh setup sanity
units:
	bash tools/test.sh setup units
pytest:
	bash tools/test.sh setup pytest
# make molecule ROLE=docker runs one scenario; without ROLE, all of them.
molecule:
	MOLECULE_SCENARIOS="$(ROLE)" bash tools/test.sh setup molecule

# Refresh requirements/constraints.txt (the lock) from requirements/*.txt.
lock:
	bash tools/lock.sh

# The Galaxy tarball (test output, venvs and caches excluded by galaxy.yml build_ignore).
build:
	bash tools/test.sh setup && .venv/bin/ansible-galaxy collection build --force
