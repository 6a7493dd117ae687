# tlshd-go. `make demo` and `make test` are the two commands README.md
# opens with; both work as root on a fresh Debian machine.

PREFIX  ?= /usr
DESTDIR ?=

.PHONY: all build demo test test-unit fuzz bench vm install uninstall clean

all: build

# A static binary: it runs in the test VM and on any distribution.
build:
	tests/lib/build.sh bin/tlshd-go $(VERSION)

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

install: build
	install -D -m 0755 bin/tlshd-go $(DESTDIR)$(PREFIX)/sbin/tlshd-go
	install -D -m 0644 systemd/tlshd-go.service $(DESTDIR)/lib/systemd/system/tlshd-go.service
	install -D -m 0644 systemd/tlshd-go.service.d/tpm.conf $(DESTDIR)$(PREFIX)/share/doc/tlshd-go/tpm.conf
	install -D -m 0644 config/example.toml $(DESTDIR)/etc/tlshd-go/config.toml.example
	install -D -m 0644 systemd/README.md $(DESTDIR)$(PREFIX)/share/doc/tlshd-go/systemd.md
	@echo "installed; the daemon runs with built-in defaults until /etc/tlshd-go/config.toml exists"
	@echo "see README.md, 'Switching from tlshd'"

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/sbin/tlshd-go $(DESTDIR)/lib/systemd/system/tlshd-go.service
	rm -rf $(DESTDIR)$(PREFIX)/share/doc/tlshd-go
	rm -f $(DESTDIR)/etc/tlshd-go/config.toml.example

clean:
	rm -rf bin
