# poold — the two commands a newcomer needs are `make run` and `make test`.
SWIFT ?= swift
# Debian packages the build and the tests need; installed by `make deps` when absent.
DEB_PACKAGES := ca-certificates git pkg-config libsqlite3-dev sqlite3 libsystemd-dev systemd util-linux mount dbus python3 postgresql
BENCH_DIR := Benchmarks

.PHONY: run test deps build bench bench-daemon install clean

PREFIX ?= /usr/local
DESTDIR ?=

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

# One debug build, then every test against it: Swift suites (beside a throwaway PostgreSQL
# cluster that scripts/with-postgres.sh starts and always stops), then poold under a real
# systemd (../shared/systemd-harness.sh; needs root, as CI is).
test: build
	scripts/with-postgres.sh $(SWIFT) test --skip-build
	tests/systemd-it.sh

# Pool benchmarks (ordo-one/benchmark) in their own package, so `make test` never builds them:
# our pool against PostgresNIO's ConnectionPool on the same workload, in the same run.
bench: deps
	cd $(BENCH_DIR) && $(SWIFT) package --allow-writing-to-package-directory benchmark --format markdown --no-progress

# loadgen against a release poold with a SQLite pool (ping and point reads, idle RSS, stop time)
# and a PostgreSQL pool, side by side with pgbench on a throwaway cluster (scripts/with-postgres.sh).
bench-daemon: deps
	$(SWIFT) build -c release --product poold
	cd $(BENCH_DIR) && $(SWIFT) build -c release --product PostgresDirect
	scripts/with-postgres.sh scripts/bench-daemon.sh

# Release binaries, units, sysusers/tmpfiles entries and the example config.
install: deps
	$(SWIFT) build -c release --product poold
	$(SWIFT) build -c release --product poolctl
	install -D -m 0755 "$$($(SWIFT) build -c release --show-bin-path)/poold" "$(DESTDIR)$(PREFIX)/bin/poold"
	install -D -m 0755 "$$($(SWIFT) build -c release --show-bin-path)/poolctl" "$(DESTDIR)$(PREFIX)/bin/poolctl"
	sed 's|/usr/local|$(PREFIX)|g' deploy/poold.service > poold.service.tmp
	install -D -m 0644 poold.service.tmp "$(DESTDIR)/etc/systemd/system/poold.service"
	rm -f poold.service.tmp
	install -D -m 0644 deploy/poold.socket "$(DESTDIR)/etc/systemd/system/poold.socket"
	install -D -m 0644 deploy/poold.sysusers "$(DESTDIR)/usr/lib/sysusers.d/poold.conf"
	install -D -m 0644 deploy/poold.tmpfiles "$(DESTDIR)/usr/lib/tmpfiles.d/poold.conf"
	test -e "$(DESTDIR)/etc/poold/poold.toml" || install -D -m 0640 config/poold.toml "$(DESTDIR)/etc/poold/poold.toml"
	install -D -m 0644 README.md "$(DESTDIR)$(PREFIX)/share/doc/poold/README.md"

clean:
	rm -rf .build .build-* $(BENCH_DIR)/.build
