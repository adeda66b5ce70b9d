# The two commands: `make demo` (the main job) and `make test` (all tests).
.PHONY: setup demo test bench clean packages test-packages test-devices

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	@bash scripts/test.sh

bench: setup
	@bash scripts/bench.sh

# Debian packages under dist/: galette-agent for amd64/arm64/armhf, galette for amd64/arm64.
packages: setup
	@bash packaging/build-debs.sh

# Installs the packages in a clean Debian 12 root and runs the agent from there (builds
# only the packages it installs: the agent for amd64 and arm64, galette for amd64).
test-packages: setup
	@AGENT_ARCHES="amd64 arm64" GALETTE_ARCHES=amd64 bash packaging/build-debs.sh
	@bash packaging/test-packages.sh

# An emulated arm64 Debian 12 device (Debian's 6.1 kernel, qemu-system-aarch64 TCG) running
# the arm64 agent package end to end against a controller here (test-devices/run.sh).
test-devices: setup
	@AGENT_ARCHES=arm64 GALETTE_ARCHES= bash packaging/build-debs.sh
	@bash test-devices/run.sh

clean:
	rm -rf node_modules packages/*/node_modules apps/*/node_modules packages/*/dist apps/*/dist .galette dist
