package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlshd-go/tlshd-go/config"
	"github.com/tlshd-go/tlshd-go/handshake"
	"github.com/tlshd-go/tlshd-go/internal/testtool"
)

// TestStatusCommand: the daemon's Events hook feeds what `tlshd-go
// status` prints, in each format.
func TestStatusCommand(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "status.sock")
	d := &handshake.Daemon{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	startStatus(ctx, d, config.Default, sock, newLogger(&testtool.Buffer{}, nil))
	if d.Events == nil {
		t.Fatal("startStatus did not set Daemon.Events")
	}
	d.Events(handshake.Event{Role: "server", Auth: "psk", Duration: 3 * time.Millisecond})
	d.Events(handshake.Event{Role: "client", Auth: "x509", Status: syscall.EACCES, Duration: time.Millisecond})

	var out, errb testtool.Buffer
	if code := run([]string{"status", "--socket", sock}, nil, &out, &errb); code != 0 {
		t.Fatalf("status: %d %s", code, errb.String())
	}
	for _, want := range []string{"p50 ", "server  psk   ok      0       1", "client  x509  failed  EACCES  1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
	out = testtool.Buffer{}
	run([]string{"status", "--socket", sock, "--json"}, nil, &out, &errb)
	if !strings.Contains(out.String(), `"status": "EACCES"`) {
		t.Errorf("--json:\n%s", out.String())
	}
	prom := filepath.Join(t.TempDir(), "tlshd-go.prom")
	if code := run([]string{"status", "--socket", sock, "--prometheus", "-o", prom}, nil, &out, &errb); code != 0 {
		t.Fatalf("--prometheus -o: %d %s", code, errb.String())
	}
	b, _ := os.ReadFile(prom)
	if data := string(b); !strings.Contains(data, `tlshd_go_handshakes_total{auth="psk",result="ok",role="server",status="0"} 1`) {
		t.Errorf("textfile:\n%s", data)
	}

	errb = testtool.Buffer{}
	if code := run([]string{"status", "--socket", sock + ".none"}, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "is the daemon running") {
		t.Errorf("no daemon: %d %q", code, errb.String())
	}
}
