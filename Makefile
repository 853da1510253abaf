# poold — the two commands a newcomer needs are `make run` and `make test`.
SWIFT ?= swift
# Debian packages the build and the tests need; installed by `make deps` when absent.
DEB_PACKAGES := ca-certificates git pkg-config libsqlite3-dev sqlite3 libsystemd-dev systemd
BENCH_DIR := Benchmarks

.PHONY: run test deps build bench bench-daemon clean

deps:
	@scripts/ensure-packages.sh $(DEB_PACKAGES)

build: deps
	$(SWIFT) build --build-tests

# poold in the foreground on the embedded default: SQLite in ./.poold/, socket ./.poold/control.sock.
run: deps
	$(SWIFT) build
	@mkdir -p .poold
	@echo "poold: control socket ./.poold/control.sock"
	@echo "       talk to it: $$($(SWIFT) build --show-bin-path)/poolctl --socket ./.poold/control.sock status"
	@echo "       stop it:    Ctrl-C (SIGINT)"
	exec "$$($(SWIFT) build --show-bin-path)/poold" --config config/dev.toml

# One debug build, then every test against it.
test: build
	$(SWIFT) test --skip-build

# Pool benchmarks (ordo-one/benchmark) in their own package, so `make test` never builds them:
# our pool against PostgresNIO's ConnectionPool on the same workload, in the same run.
bench: deps
	cd $(BENCH_DIR) && $(SWIFT) package --allow-writing-to-package-directory benchmark --format markdown --no-progress

# loadgen against a release poold with a SQLite pool: ping and point reads, idle RSS, stop time.
bench-daemon: deps
	$(SWIFT) build -c release --product poold
	scripts/bench-daemon.sh

clean:
	rm -rf .build .build-* $(BENCH_DIR)/.build
