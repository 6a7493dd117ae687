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
	levelFlag := fs.String("log-level", "", "override the policy's log level (debug, info, warn, error)")
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
	setLevel := func(p *config.Policy) {
		level.Set(p.Global().LogLevel)
		if *levelFlag != "" {
			var l slog.Level
			if err := l.UnmarshalText([]byte(*levelFlag)); err == nil {
				level.Set(l)
			}
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
	}

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

// loadPolicy reads the TOML policy. The default path may be absent (the
// built-in defaults apply); a file given with -c must exist. A file in
// tlshd's own format (tlshd.conf) is converted, with a warning, so that
// setups passing "-c /etc/tlshd.conf" keep working.
func loadPolicy(path string, log *slog.Logger) (*config.Policy, error) {
	if path == "" {
		if _, err := os.Stat(config.DefaultPath); errors.Is(err, os.ErrNotExist) {
			log.Info("no policy file; using the built-in defaults", "path", config.DefaultPath)
			return config.Default(), nil
		}
		path = config.DefaultPath
	}
	p, err := config.Load(path)
	if err == nil {
		return p, nil
	}
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		return nil, err
	}
	converted, warnings, ierr := config.Import(bytesReader(data), path)
	if ierr != nil || !looksLikeKeyFile(data) {
		return nil, err
	}
	p, perr := config.Parse(converted, path+" (converted from tlshd format)")
	if perr != nil {
		return nil, err
	}
	log.Warn("the policy file is in tlshd's format; converted it (run `tlshd-go config import` to keep a TOML copy)", "path", path)
	for _, w := range warnings {
		log.Warn("tlshd.conf", "warning", w)
	}
	return p, nil
}

// newLogger logs key=value lines to w. Under systemd (JOURNAL_STREAM set)
// the journal stamps the time itself, so the line leaves it out.
func newLogger(w io.Writer, level *slog.LevelVar) *slog.Logger {
	if level == nil {
		level = new(slog.LevelVar)
	}
	opts := &slog.HandlerOptions{Level: level}
	if os.Getenv("JOURNAL_STREAM") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	return slog.New(slog.NewTextHandler(w, opts))
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
