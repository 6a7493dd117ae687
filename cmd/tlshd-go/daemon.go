package main

import (
	"context"
	"crypto"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/sys/unix"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/tpmkey"
	"github.com/tlshd-go/tlshd-go/rekey/session"
	"github.com/tlshd-go/tlshd-go/status"
	"github.com/tlshd-go/tlshd-go/systemd"
)

func versionLine() string { return systemd.VersionLine(version) }

// runDaemon is the daemon: tlshd's flags (-c FILE, -s, -v, -h), plus
// --log-level.
func runDaemon(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tlshd-go", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var path string
	fs.StringVar(&path, "c", "", "policy `file` (TOML; a tlshd.conf is converted on the fly) (default "+config.DefaultPath+")")
	fs.StringVar(&path, "config", "", "same as -c")
	fs.Bool("s", false, "log to stderr (always on: under systemd stderr is the journal; accepted for tlshd compatibility)")
	fs.Bool("stderr", false, "same as -s")
	var showVersion bool
	fs.BoolVar(&showVersion, "v", false, "print the version and exit")
	fs.BoolVar(&showVersion, "version", false, "same as -v")
	var levelFlag logLevelFlag
	fs.Var(&levelFlag, "log-level", "override the policy's log level (debug, info, warn, error)")
	statusSocket := fs.String("status-socket", status.DefaultSocket, "serve `tlshd-go status` on this unix socket (\"\" for none)")
	fs.Usage = func() {} // the flag package calls it on every error
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			topUsage(stdout)
			fmt.Fprintln(stdout, "\nDaemon flags:")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "tlshd-go: %v\nRun 'tlshd-go -h' for usage.\n", err)
		return 2
	}
	if showVersion {
		// tlshd prints its version on stderr, where scripts look for it.
		fmt.Fprintln(stderr, versionLine())
		return 0
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "tlshd-go: unexpected argument %q\nRun 'tlshd-go -h' for usage.\n", fs.Arg(0))
		return 2
	}
	// The daemon holds PSKs and private keys: no core dumps, and no
	// ptrace or /proc/PID/mem access by other processes of root's uid
	// without CAP_SYS_PTRACE (issue 8).
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		fmt.Fprintf(stderr, "tlshd-go: PR_SET_DUMPABLE: %v\n", err)
	}
	noHugePages()
	runtime.UnlockOSThread() // locked by init for the re-exec only

	level := new(slog.LevelVar)
	log := newLogger(stderr, level)
	policy, err := loadPolicy(path, log)
	if err != nil {
		log.Error("loading the policy", "err", err)
		return 1
	}
	if err := checkFDLimit(policy); err != nil {
		log.Error("refusing to start", "err", err)
		return 1
	}
	setLevel := func(p *config.Policy) {
		level.Set(p.Global().LogLevel)
		if levelFlag.set {
			level.Set(levelFlag.level)
		}
	}
	setLevel(policy)
	holder := config.NewHolder(policy)

	kernel, err := genl.Dial()
	if err != nil {
		if errors.Is(err, genl.ErrNoFamily) {
			log.Error("this kernel has no TLS handshake upcall: the generic netlink family \"handshake\" is missing " +
				"(net/handshake, CONFIG_NET_HANDSHAKE, Linux 6.5 or later); nothing for tlshd-go to serve")
		} else {
			log.Error("opening the handshake netlink family", "err", err)
		}
		return 1
	}
	defer kernel.Close()
	listener, err := genl.Listen()
	if err != nil {
		log.Error("joining the tlshd multicast group", "err", err)
		return 1
	}
	defer listener.Close()
	caps := kernel.Capabilities()
	log.Debug("kernel capabilities", "family", caps.FamilyID, "probed", caps.Probed, "done_attrs", caps.DoneAttrs, "probe_err", caps.ProbeErr)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tpm := &tpmOpener{device: func() string { return holder.Load().Global().TPMDevice }}
	defer tpm.close()
	keyLog, closeKeyLog, err := openKeyLog(os.Getenv, policy, log) // keylog.go
	if err != nil {
		log.Error("opening the key log", "err", err)
		return 1
	}
	defer closeKeyLog()
	d := &handshake.Daemon{
		Kernel:     kernel,
		Ready:      listener,
		Keyring:    &handshake.SystemKeyring{},
		Installer:  handshake.KTLS{},
		Policy:     holder.Load,
		Log:        log,
		OpenTPMKey: tpm.open,
		KeyLog:     keyLog,
		LookupAddr: net.DefaultResolver.LookupAddr, // sni.go
		// Used only where the kernel's DONE has SESSION_ID (u32).
		KeyUpdates: &handshake.KeyUpdates{Store: &session.Keyring{}},
	}

	startStatus(ctx, d, holder.Load, *statusSocket, log)

	notifier, err := systemd.FromEnv()
	if err != nil {
		log.Warn("sd_notify", "err", err)
	}
	if iv, ok := systemd.WatchdogInterval(); ok {
		// WATCHDOG=1 from the accept thread after each sweep: only a
		// live accept loop keeps the daemon from being restarted.
		d.Sweep = iv / 3
		d.Alive = func() { notifier.Watchdog() }
	}
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	tuneMemory(policy.Global().MaxConcurrent)
	tuneScheduler()
	log.Info("tlshd-go started", "version", version, "policy", policyName(path), "max_concurrent", policy.Global().MaxConcurrent)
	notifier.Ready()
	releaseStartupPages()
	status := time.NewTicker(5 * time.Second)
	defer status.Stop()
	for {
		select {
		case sig := <-sigs:
			// SIGUSR1 reloads too (issue 8): its default action would
			// kill the daemon, and operators' scripts use either signal.
			if sig == syscall.SIGHUP || sig == syscall.SIGUSR1 {
				notifier.Reloading()
				if p, err := loadPolicy(path, log); err != nil {
					log.Error("reload failed; keeping the current policy", "err", err)
				} else {
					holder.Store(p)
					setLevel(p)
					log.Info("policy reloaded", "policy", policyName(path))
				}
				notifier.Ready()
				releaseStartupPages()
				continue
			}
			log.Info("stopping: no new requests; handshakes in flight may finish within drain_timeout",
				"signal", sig.String(), "drain_timeout", holder.Load().Global().DrainTimeout)
			notifier.Stopping()
			cancel()
			if err := <-runErr; err != nil {
				log.Error("serving", "err", err)
				return 1
			}
			return 0
		case err := <-runErr:
			log.Error("serving stopped", "err", err)
			return 1
		case <-status.C:
			s := d.Stats()
			notifier.Status(fmt.Sprintf("%d handshakes in flight, %d succeeded, %d failed", s.InFlight, s.Served, s.Failed))
		}
	}
}

func policyName(path string) string {
	if path == "" {
		return config.DefaultPath
	}
	return path
}

// tpmOpener opens the TPM the first time a TPM key is used and keeps it.
type tpmOpener struct {
	device func() string
	mu     sync.Mutex
	tpm    transport.TPMCloser
}

func (o *tpmOpener) open(pem []byte) (crypto.Signer, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tpm == nil {
		tpm, err := tpmkey.OpenTPM(o.device())
		if err != nil {
			return nil, err
		}
		o.tpm = tpm
	}
	return tpmkey.Open(pem, o.tpm, nil)
}

func (o *tpmOpener) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tpm != nil {
		o.tpm.Close()
	}
}
