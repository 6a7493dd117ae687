package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlshd-go/tlshd-go/config"
)

func TestOpenKeyLog(t *testing.T) {
	dir := t.TempDir()
	envFile, policyFile := filepath.Join(dir, "env.keys"), filepath.Join(dir, "policy.keys")
	policy, err := config.Parse([]byte("[debug]\nkeylog = \""+policyFile+"\"\n"), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, env string
		policy    *config.Policy
		want      string
	}{
		{"off", "", config.Default(), ""},
		{"policy", "", policy, policyFile},
		{"SSLKEYLOGFILE first", envFile, policy, envFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			w, closeFn, err := openKeyLog(func(string) string { return tc.env }, tc.policy, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer closeFn()
			if tc.want == "" {
				if w != nil || logs.Len() != 0 {
					t.Fatalf("key log %v, log %q; want none", w, logs.String())
				}
				return
			}
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), tc.want) {
				t.Errorf("no warning naming %s: %q", tc.want, logs.String())
			}
			w.Write([]byte("CLIENT_TRAFFIC_SECRET_0 00 11\n"))
			fi, err := os.Stat(tc.want)
			if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
				t.Errorf("%s: %v %v", tc.want, fi, err)
			}
		})
	}
}
