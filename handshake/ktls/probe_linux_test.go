package ktls

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// These run against this host's kernel: with kTLS (the VM guests), every
// TCP probe must succeed; without it (the development container has no
// tls module), every one must say so with ErrNoKTLS rather than fail
// some other way, since `tlshd-go probe` tells operators to load it.
func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root")
		}
		t.Skip("needs root to load the tls module")
	}
}

func TestProbeCiphers(t *testing.T) {
	requireRoot(t)
	for _, s := range Suites() {
		if err := ProbeCipher(s); !okOrNoKTLS(err) {
			t.Errorf("suite %#04x: %v", s, err)
		}
	}
	if err := ProbeCipher(0x1304); err == nil {
		t.Error("TLS_AES_128_CCM_SHA256 is not a suite Install knows, yet it probed fine")
	}
}

func TestProbeRekey(t *testing.T) {
	requireRoot(t)
	// Linux 6.14+ takes a second TLS_TX for TLS 1.3.
	if err := ProbeRekey(0x1301); !okOrNoKTLS(err) {
		t.Errorf("rekey: %v", err)
	}
}

func TestProbeTxMaxPayload(t *testing.T) {
	requireRoot(t)
	err := ProbeTxMaxPayload()
	var ie *InstallError
	if !okOrNoKTLS(err) && !(errors.As(err, &ie) && ie.Step == StepMaxPayload && errors.Is(err, unix.ENOPROTOOPT)) {
		t.Errorf("TLS_TX_MAX_PAYLOAD_LEN: want nil or ENOPROTOOPT at its step, got %v", err)
	}
	t.Logf("TLS_TX_MAX_PAYLOAD_LEN: %v", err)
}

func TestProbeMPTCP(t *testing.T) {
	requireRoot(t)
	if err := ProbeMPTCP(); err != nil {
		t.Skipf("no MPTCP here: %v", err)
	}
	// Released kernels refuse kTLS on MPTCP; the probe must report the
	// refusal as ULP-unsupported, not as a socket setup error.
	err := ProbeMPTCPULP()
	if err != nil && !errors.Is(err, ErrULPUnsupported) {
		t.Errorf("MPTCP kTLS: %v, want nil or ErrULPUnsupported", err)
	}
	t.Logf("MPTCP kTLS: %v", err)
}

// okOrNoKTLS: the feature works, or the whole of kTLS is missing, and
// consistently so across probes.
func okOrNoKTLS(err error) bool {
	return err == nil || errors.Is(err, ErrNoKTLS)
}

func TestProbeConsistent(t *testing.T) {
	requireRoot(t)
	base := ProbeCipher(0x1301)
	for name, err := range map[string]error{"rekey": ProbeRekey(0x1301), "max payload": ProbeTxMaxPayload()} {
		if errors.Is(base, ErrNoKTLS) != errors.Is(err, ErrNoKTLS) {
			t.Errorf("%s: %v, but AES-128-GCM: %v", name, err, base)
		}
	}
}
