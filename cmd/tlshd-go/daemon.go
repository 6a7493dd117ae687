package main

import (
	"context"
	"crypto"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake"
	"github.com/tlshd-go/tlshd-go/handshake/genl"
	"github.com/tlshd-go/tlshd-go/handshake/tpmkey"
	"github.com/tlshd-go/tlshd-go/rekey/session"
	"github.com/tlshd-go/tlshd-go/systemd"
)

func versionLine() string { return systemd.VersionLine(version) }

// runDaemon is the daemon: tlshd's flags (-c FILE, -s, -v, -h), plus
// --log-level.
func runDaemon(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("tlshd-go", flag.ContinueOnError)
	fs.SetOutput(stderr)
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
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: tlshd-go [-c FILE] [-s] [-v] [--log-level LEVEL]\n"+
			"       tlshd-go connect|serve|check|config ... (see tlshd-go CMD -h)\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if showVersion {
		// tlshd prints its version on stderr, where scripts look for it.
		fmt.Fprintln(stderr, versionLine())
		return 0
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return 2
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

	tpm := &tpmOpener{device: func() string { return holder.Load().Global().TPMDevice }}
	defer tpm.close()
	d := &handshake.Daemon{
		Kernel:     kernel,
		Ready:      listener,
		Keyring:    &handshake.SystemKeyring{},
		Installer:  handshake.KTLS{},
		Policy:     holder.Load,
		Log:        log,
		OpenTPMKey: tpm.open,
		// Used only where the kernel's DONE has SESSION_ID (u32).
		KeyUpdates: &handshake.KeyUpdates{Store: &session.Keyring{}},
	}

	notifier, err := systemd.FromEnv()
	if err != nil {
		log.Warn("sd_notify", "err", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
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
			if sig == syscall.SIGHUP {
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
			log.Info("stopping; waiting for handshakes in flight", "signal", sig.String())
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
