#!/usr/bin/env bash
# Builds poold's Debian package with dpkg-deb alone: `make deb` (release binaries with the Swift
# runtime linked in statically, so the package needs no Swift toolchain on the target).
#
#   DEB_CONFIG=release (default) | debug   debug packs the binaries `make test` built, for the
#                                          systemd test, on machines where the toolchain is present
#   DEB_OUT=.build/deb                     where the package and its staging tree go
#
# Prints the package's path. Run from the project root, after `make man`.
set -euo pipefail
config=${DEB_CONFIG:-release}
out=${DEB_OUT:-.build/deb}
version=$(head -n 1 VERSION)
arch=$(dpkg --print-architecture)
[ -f .build/man/poolctl.1 ] || { echo "build-deb: run make man first" >&2; exit 1; }

if [ "$config" = release ]; then
  for product in poold poolctl; do
    swift build -c release --static-swift-stdlib --scratch-path .build-deb --product "$product" >&2
  done
  bin=$(swift build -c release --static-swift-stdlib --scratch-path .build-deb --show-bin-path)
else
  bin=$(swift build --show-bin-path)
fi

root=$out/root
rm -rf "$root"
mkdir -p "$root/DEBIAN"
install -D -m 0755 "$bin/poold" "$root/usr/bin/poold"
install -D -m 0755 "$bin/poolctl" "$root/usr/bin/poolctl"
if [ "$config" = release ]; then strip --strip-unneeded "$root/usr/bin/poold" "$root/usr/bin/poolctl"; fi
install -d "$root/usr/lib/systemd/system"
sed 's|/usr/local|/usr|g' deploy/poold.service > "$root/usr/lib/systemd/system/poold.service"
sed 's|/usr/local|/usr|g' deploy/poold.socket > "$root/usr/lib/systemd/system/poold.socket"
chmod 0644 "$root/usr/lib/systemd/system/"*
install -D -m 0644 deploy/poold.sysusers "$root/usr/lib/sysusers.d/poold.conf"
install -D -m 0644 deploy/poold.tmpfiles "$root/usr/lib/tmpfiles.d/poold.conf"
install -D -m 0644 deploy/poold.catalog "$root/usr/lib/systemd/catalog/poold.catalog"
install -D -m 0640 config/poold.toml "$root/etc/poold/poold.toml"
install -D -m 0644 README.md "$root/usr/share/doc/poold/README.md"
for page in poolctl.1 poold.8 poold.toml.5; do
  section=${page##*.}
  install -D -m 0644 ".build/man/$page" "$root/usr/share/man/man$section/$page"
  gzip -9n "$root/usr/share/man/man$section/$page"
done

depends="libc6, libsqlite3-0, libsystemd0, libstdc++6, libgcc-s1, systemd"
cat > "$root/DEBIAN/control" <<CONTROL
Package: poold
Version: $version
Architecture: $arch
Maintainer: poold developers <poold@localhost>
Section: admin
Priority: optional
Depends: $depends
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Description: bounded pools of database connections and workers, running jobs
 poold owns bounded pools of SQLite connections, PostgreSQL connections and
 worker processes, and runs jobs on them for local programs that talk to it
 over a Unix control socket or through poolctl. It runs under systemd
 (Type=notify, watchdog, socket activation) and logs to the journal.
CONTROL
echo /etc/poold/poold.toml > "$root/DEBIAN/conffiles"

# The poold user and /run/poold, the catalog, the units; the service is not enabled or started:
# the example config is the administrator's to adapt first (systemctl enable --now poold).
cat > "$root/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  systemd-sysusers poold.conf
  systemd-tmpfiles --create poold.conf || true
  # The config may name secrets' paths and groups: readable by poold, not by everyone.
  chgrp poold /etc/poold/poold.toml && chmod 0640 /etc/poold/poold.toml
  journalctl --update-catalog || true
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
SCRIPT
cat > "$root/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && { [ "$1" = remove ] || [ "$1" = upgrade ]; }; then
  systemctl stop poold.service poold.socket || true
fi
SCRIPT
cat > "$root/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = remove ] || [ "$1" = purge ]; then
  journalctl --update-catalog || true
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
if [ "$1" = purge ]; then rm -rf /etc/poold /var/lib/poold; fi
SCRIPT
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

deb=$out/poold_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
