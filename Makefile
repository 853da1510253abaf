# poold — the two commands a newcomer needs are `make run` and `make test`.
SWIFT ?= swift
# Debian packages the build and the tests need; installed by `make deps` when absent.
DEB_PACKAGES := ca-certificates openssl git pkg-config libsqlite3-dev sqlite3 libsystemd-dev systemd util-linux mount dbus python3 postgresql \
  groff-base prometheus
BENCH_DIR := Benchmarks
FUZZ_DIR := Fuzz
# Seconds each fuzzer runs in `make fuzz` (FUZZ_SECONDS=60 make fuzz for a quick look).
FUZZ_SECONDS ?= 600

.PHONY: run test lint soak soak-queue deps build bench bench-daemon bench-queue fuzz install man deb clean

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
test: lint build man
	scripts/with-postgres.sh $(SWIFT) test --skip-build
	tests/systemd-it.sh

# Man pages in .build/man: poolctl(1) generated from its ArgumentParser definitions (so that it
# cannot drift from the code), poold(8) and poold.toml(5) from man/. Each must render with no
# groff warning.
MAN_DIR := .build/man
man: deps
	$(SWIFT) package generate-manual --configuration debug --date "$$(git log -1 --format=%cs 2>/dev/null || date +%F)" \
	  --authors "poold developers" > /dev/null
	@mkdir -p $(MAN_DIR)
	cp "$$(find .build/plugins/GenerateManual/outputs -name poolctl.1 | head -n 1)" $(MAN_DIR)/poolctl.1
	cp man/poold.8 man/poold.toml.5 $(MAN_DIR)/
	@for page in $(MAN_DIR)/poolctl.1 $(MAN_DIR)/poold.8 $(MAN_DIR)/poold.toml.5; do \
	  warnings=$$(groff -man -Tutf8 -ww -z "$$page" 2>&1); \
	  if [ -n "$$warnings" ]; then echo "$$page: $$warnings" >&2; exit 1; fi; \
	done
	@echo "man pages in $(MAN_DIR): poolctl.1 poold.8 poold.toml.5"

# The formatter's rules (.swift-format: 4 spaces, 140 columns) on Sources and Tests, and the
# 140-column limit on what the formatter cannot break (string literals). Fix with
# `swift format format -i -r Sources Tests`, then split what is still too long by hand.
lint:
	$(SWIFT) format lint --strict --recursive Sources Tests
	@python3 -c 'import sys, pathlib; long = [f"{p}:{n}: {len(l)} columns" for d in ("Sources", "Tests") \
	  for p in sorted(pathlib.Path(d).rglob("*.swift")) for n, l in enumerate(p.read_text().splitlines(), 1) if len(l) > 140]; \
	  sys.exit("\n".join(long) or None)'

# Shutdown soak, not part of `make test`: CYCLES (100) times, poold with two SQLite pools (max 4
# and a contended max 1), a PostgreSQL pool (throwaway cluster) and two exec pools (max 2 and a
# contended max 1) under pipelined load gets SIGTERM (twice in a third of
# the cycles); every request sent must be answered once, nothing may leak, the databases must
# hold whole transactions only. SOAK_SEED=N repeats a run's random choices (delays, double
# signals, request mix; thread timing still varies); a failed cycle keeps its temp dir.
soak: deps
	$(SWIFT) build --product poold
	scripts/with-postgres.sh tests/soak.py

# Durable queue soak, not part of `make test`: three poold hosts of one store, a stream of JOBS
# (20,000) SQL jobs, KILLS (100) kill -9 cycles of a random host and one PostgreSQL restart;
# reports lost jobs and duplicate effects (both must be 0) and duplicate executions (at most the
# jobs in flight on the killed hosts). SOAK_SEED=N repeats a run's random choices.
soak-queue: deps
	$(SWIFT) build --product poold
	scripts/with-postgres.sh tests/soak_queue.py

# Pool benchmarks (ordo-one/benchmark) in their own package, so `make test` never builds them:
# our pool against PostgresNIO's ConnectionPool on the same workload, in the same run.
bench: deps
	cd $(BENCH_DIR) && $(SWIFT) package --allow-writing-to-package-directory benchmark --format markdown --no-progress

# loadgen against a release poold with a SQLite pool (ping and point reads, idle RSS, stop time)
# and a PostgreSQL pool, side by side with pgbench on a throwaway cluster (scripts/with-postgres.sh);
# then the AbuseTests suite against that release poold, for its ping latency under abuse.
bench-daemon: deps
	$(SWIFT) build -c release --product poold
	$(SWIFT) build --build-tests
	cd $(BENCH_DIR) && $(SWIFT) build -c release --product PostgresDirect && $(SWIFT) build -c release --product WireClientBench
	scripts/with-postgres.sh scripts/bench-daemon.sh

# Durable queues (issue 18) against pgqueuer 1.6.0 (Python, asyncpg; pip-installed into .build/bench-venv for
# this target only) on one throwaway cluster, one after the other: enqueue rates, completions/s at concurrency 8,
# enqueue→start latency at 1k/s and 2k/s, a killed host's jobs restarting, and STEADY_SECONDS (600) at 1k/s;
# then a table against the issue's targets (scripts/bench-queue.sh). STEADY_SECONDS=60 for a quick look.
bench-queue: deps
	$(SWIFT) build -c release --product poold
	STEADY_SECONDS=$${STEADY_SECONDS:-600} scripts/with-postgres.sh scripts/bench-queue.sh

# libFuzzer + AddressSanitizer on untrusted input, in their own package (Fuzz/) so that
# `make test` never builds them: FuzzRequest (RequestDecoder.decode, one control-protocol line),
# FuzzConfig (ConfigLoader.parse, one TOML file) and FuzzAdhocSQL (ad-hoc SQL in the SQLite
# sandbox, one statement a line, with Fuzz/adhoc.dict; a crash, or a file left beside the
# database, fails it). Each is built with
#   cd Fuzz && swift build -c release -Xswiftc -sanitize=fuzzer,address --product FuzzRequest
# and runs FUZZ_SECONDS on a scratch corpus (Fuzz/.build/corpus/NAME/, kept between runs, new
# inputs land there) plus the committed seeds (Tests/Fuzz/corpus/NAME/, only read). A crash,
# leak or timeout leaves its input in Fuzz/crashes/ (ignored by git) and fails the target; copy
# it into Tests/Fuzz/corpus/NAME/ as crash-WHAT so the FuzzCorpusReplay tests replay it.
# FuzzConfig runs without leak detection: TOMLKit 0.6.0 leaks on every parse (the error buffer
# of TOMLTable(string:), the root table, and the array tableGetValues mallocs for each
# TOMLTable.values that TOMLNode reads; ~200 bytes a parse), so LeakSanitizer would stop it on
# the first input and again at exit.
fuzz: deps
	cd $(FUZZ_DIR) && $(SWIFT) build -c release -Xswiftc -sanitize=fuzzer,address --product FuzzRequest
	cd $(FUZZ_DIR) && $(SWIFT) build -c release -Xswiftc -sanitize=fuzzer,address --product FuzzConfig
	cd $(FUZZ_DIR) && $(SWIFT) build -c release -Xswiftc -sanitize=fuzzer,address --product FuzzAdhocSQL
	cd $(FUZZ_DIR) && $(SWIFT) build -c release -Xswiftc -sanitize=fuzzer,address --product FuzzPostgresMessages
	@mkdir -p $(FUZZ_DIR)/crashes
	@bin="$$(cd $(FUZZ_DIR) && $(SWIFT) build -c release --show-bin-path)"; status=0; \
	for spec in request:FuzzRequest:1 config:FuzzConfig:0 adhoc:FuzzAdhocSQL:1 postgres:FuzzPostgresMessages:1; do \
	    name=$${spec%%:*}; fuzzer=$${spec#*:}; leaks=$${fuzzer#*:}; fuzzer=$${fuzzer%%:*}; \
	    scratch=$(CURDIR)/$(FUZZ_DIR)/.build/corpus/$$name; dict=; \
	    if [ -f $(FUZZ_DIR)/$$name.dict ]; then dict=-dict=$(CURDIR)/$(FUZZ_DIR)/$$name.dict; fi; \
	    mkdir -p "$$scratch" && cp Tests/Fuzz/corpus/$$name/* "$$scratch"/; \
	    echo "fuzz: $$fuzzer for $(FUZZ_SECONDS)s on $$scratch + Tests/Fuzz/corpus/$$name"; \
	    ASAN_OPTIONS="detect_leaks=$$leaks:$$ASAN_OPTIONS" "$$bin/$$fuzzer" -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -max_len=65536 -detect_leaks=$$leaks $$dict \
	        -artifact_prefix=$(CURDIR)/$(FUZZ_DIR)/crashes/$$name- "$$scratch" $(CURDIR)/Tests/Fuzz/corpus/$$name || status=1; \
	done; \
	if [ $$status -ne 0 ]; then echo "fuzz: a fuzzer failed; its input is in $(FUZZ_DIR)/crashes/"; fi; \
	exit $$status

# Release binaries, units, sysusers/tmpfiles entries and the example config.
# Units go where the vendor's go ($(PREFIX)/lib/systemd/system; /etc/systemd/system is the
# administrator's, for drop-ins and overrides). systemd reads /usr/local/lib/systemd/system too.
install: deps man
	$(SWIFT) build -c release --product poold
	$(SWIFT) build -c release --product poolctl
	install -D -m 0755 "$$($(SWIFT) build -c release --show-bin-path)/poold" "$(DESTDIR)$(PREFIX)/bin/poold"
	install -D -m 0755 "$$($(SWIFT) build -c release --show-bin-path)/poolctl" "$(DESTDIR)$(PREFIX)/bin/poolctl"
	sed 's|/usr/local|$(PREFIX)|g' deploy/poold.service > poold.service.tmp
	install -D -m 0644 poold.service.tmp "$(DESTDIR)$(PREFIX)/lib/systemd/system/poold.service"
	rm -f poold.service.tmp
	install -D -m 0644 deploy/poold.socket "$(DESTDIR)$(PREFIX)/lib/systemd/system/poold.socket"
	install -D -m 0644 deploy/poold.sysusers "$(DESTDIR)/usr/lib/sysusers.d/poold.conf"
	install -D -m 0644 deploy/poold.tmpfiles "$(DESTDIR)/usr/lib/tmpfiles.d/poold.conf"
	install -D -m 0644 deploy/poold.catalog "$(DESTDIR)/usr/lib/systemd/catalog/poold.catalog"
	@# The poold user and group now (not only at boot), so that the config can be group poold's:
	@# 0640 root:root would be unreadable to the unit's User=poold.
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" -eq 0 ] && command -v systemd-sysusers > /dev/null; then \
	  systemd-sysusers /usr/lib/sysusers.d/poold.conf; fi
	@if [ ! -e "$(DESTDIR)/etc/poold/poold.toml" ]; then \
	  install -D -m 0640 config/poold.toml "$(DESTDIR)/etc/poold/poold.toml"; \
	  if getent group poold > /dev/null; then chgrp poold "$(DESTDIR)/etc/poold/poold.toml"; \
	  else echo "make install: no group poold yet: after systemd-sysusers, chgrp poold /etc/poold/poold.toml"; fi; \
	fi
	install -D -m 0644 README.md "$(DESTDIR)$(PREFIX)/share/doc/poold/README.md"
	install -D -m 0644 $(MAN_DIR)/poolctl.1 "$(DESTDIR)$(PREFIX)/share/man/man1/poolctl.1"
	install -D -m 0644 $(MAN_DIR)/poold.8 "$(DESTDIR)$(PREFIX)/share/man/man8/poold.8"
	install -D -m 0644 $(MAN_DIR)/poold.toml.5 "$(DESTDIR)$(PREFIX)/share/man/man5/poold.toml.5"
	@if [ -z "$(DESTDIR)" ] && command -v journalctl > /dev/null; then journalctl --update-catalog || true; fi

# A Debian package in .build/deb (scripts/build-deb.sh, dpkg-deb only): release binaries with the
# Swift runtime linked in statically, units in /usr/lib/systemd/system, sysusers and tmpfiles
# entries, the catalog, the man pages, and the example config as a conffile. Its maintainer
# scripts create the user and /run/poold and reload systemd; they do not enable the service.
deb: deps man
	scripts/build-deb.sh

clean:
	rm -rf .build .build-* $(BENCH_DIR)/.build $(FUZZ_DIR)/.build
