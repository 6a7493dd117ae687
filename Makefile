# tlshd-go. `make demo` and `make test` are the two commands README.md
# opens with; both work as root on a fresh Debian machine.

PREFIX  ?= /usr
DESTDIR ?=
# systemd reads units from /usr/lib/systemd/system and, for PREFIX=/usr/local,
# from /usr/local/lib/systemd/system; the unit's ExecStart follows PREFIX.
UNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR  ?= $(PREFIX)/share/man
DOCDIR  ?= $(PREFIX)/share/doc/tlshd-go
SYSCONFDIR ?= /etc

.PHONY: all build man demo test test-unit fuzz bench vm install uninstall deb clean

all: build man

# A position-independent executable without cgo, byte-identical from one
# commit to the next (tests/lib/build.sh says how).
build:
	tests/lib/build.sh bin/tlshd-go $(VERSION)

# Man pages from their Markdown sources in docs/man (go-md2man: Debian
# package go-md2man).
MANPAGES = bin/man/tlshd-go.8 bin/man/tlshd-go.toml.5
man: $(MANPAGES)
bin/man/%: docs/man/%.md
	@mkdir -p bin/man
	go-md2man -in $< -out $@

# The daemon's main job: serve the kernel's handshake requests. On a kernel
# without net/handshake it runs the NVMe/TCP-over-TLS demo in the bundled VM.
demo: build
	tests/demo

# Everything: static checks, unit and interop tests (OpenSSL, GnuTLS,
# swtpm), race detector, fuzzing, benchmark smoke runs, and the VM
# end-to-end tests on Debian's 6.12 and 7.x kernels.
test:
	tests/run

test-unit:
	STAGES="deps static unit" tests/run

fuzz:
	STAGES="fuzz" FUZZTIME=$${FUZZTIME:-60s} tests/run

bench:
	tests/bench

vm: build
	DAEMON=bin/tlshd-go tests/vm/run.sh

install: build man
	install -D -m 0755 bin/tlshd-go $(DESTDIR)$(PREFIX)/sbin/tlshd-go
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|^ExecStart=/usr/sbin/tlshd-go|ExecStart=$(PREFIX)/sbin/tlshd-go|' systemd/tlshd-go.service \
		> $(DESTDIR)$(UNITDIR)/tlshd-go.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/tlshd-go.service
	install -D -m 0644 bin/man/tlshd-go.8 $(DESTDIR)$(MANDIR)/man8/tlshd-go.8
	install -D -m 0644 bin/man/tlshd-go.toml.5 $(DESTDIR)$(MANDIR)/man5/tlshd-go.toml.5
	install -D -m 0644 systemd/tlshd-go.service.d/tpm.conf $(DESTDIR)$(DOCDIR)/tpm.conf
	install -D -m 0644 config/example.toml $(DESTDIR)$(SYSCONFDIR)/tlshd-go/config.toml.example
	install -D -m 0644 systemd/README.md $(DESTDIR)$(DOCDIR)/systemd.md
	install -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	@echo "installed; the daemon runs with built-in defaults until $(SYSCONFDIR)/tlshd-go/config.toml exists"
	@echo "see man tlshd-go, 'SWITCHING FROM TLSHD AND BACK'"

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/sbin/tlshd-go $(DESTDIR)$(UNITDIR)/tlshd-go.service
	rm -f $(DESTDIR)$(MANDIR)/man8/tlshd-go.8 $(DESTDIR)$(MANDIR)/man5/tlshd-go.toml.5
	rm -rf $(DESTDIR)$(DOCDIR)
	rm -f $(DESTDIR)$(SYSCONFDIR)/tlshd-go/config.toml.example

# The Debian package, with debhelper (dpkg-buildpackage): bin/deb/*.deb.
# It builds from a copy of the tree's files, so the tree stays clean.
deb:
	tests/lib/build-deb.sh

clean:
	rm -rf bin
