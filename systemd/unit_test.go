package systemd

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// unitFile is a parsed systemd unit: section → key → values in order.
type unitFile map[string]map[string][]string

// parseUnit reads the subset of systemd.syntax(7) unit files use:
// [Section] headers, Key=Value lines, '#' and ';' comments, and
// backslash line continuations.
func parseUnit(t *testing.T, text string) unitFile {
	t.Helper()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	var pending string
	for n := 1; sc.Scan(); n++ {
		line := pending + sc.Text()
		pending = ""
		if strings.HasSuffix(line, `\`) {
			pending = strings.TrimSuffix(line, `\`) + " "
			continue
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("line %d: not a directive: %q", n, line)
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// requiredDirectives are the settings the daemon's ordering, reloads and
// sandbox depend on. Dropping or changing one must be deliberate: change
// this table and systemd/README.md with it.
var requiredDirectives = []struct{ section, key, value string }{
	{"Unit", "DefaultDependencies", "no"},
	{"Unit", "Before", "remote-fs-pre.target"},
	{"Unit", "Conflicts", "shutdown.target"},
	{"Service", "Type", "notify"},
	{"Service", "NotifyAccess", "main"},
	{"Service", "ExecStart", "/usr/sbin/tlshd-go"},
	{"Service", "ExecReload", "/bin/kill -HUP $MAINPID"},
	{"Service", "Restart", "on-failure"},
	{"Service", "LimitCORE", "0"},
	{"Service", "MemoryMax", "512M"},
	{"Service", "RuntimeDirectory", "tlshd-go"},
	{"Service", "RuntimeDirectoryMode", "0700"},
	{"Service", "WatchdogSec", "30s"},
	{"Service", "CapabilityBoundingSet", "CAP_NET_ADMIN"},
	{"Service", "NoNewPrivileges", "yes"},
	{"Service", "KeyringMode", "private"},
	{"Service", "ProtectSystem", "strict"},
	{"Service", "ProtectHome", "yes"},
	{"Service", "PrivateTmp", "yes"},
	{"Service", "PrivateDevices", "yes"},
	{"Service", "PrivateMounts", "yes"},
	{"Service", "ProtectProc", "invisible"},
	{"Service", "ProtectKernelTunables", "yes"},
	{"Service", "ProtectKernelModules", "yes"},
	{"Service", "ProtectKernelLogs", "yes"},
	{"Service", "ProtectControlGroups", "yes"},
	{"Service", "ProtectClock", "yes"},
	{"Service", "ProtectHostname", "yes"},
	{"Service", "UMask", "0077"},
	{"Service", "RestrictAddressFamilies", "AF_UNIX AF_NETLINK AF_INET AF_INET6"},
	{"Service", "IPAddressDeny", "any"},
	{"Service", "RestrictNamespaces", "yes"},
	{"Service", "RestrictRealtime", "yes"},
	{"Service", "RestrictSUIDSGID", "yes"},
	{"Service", "LockPersonality", "yes"},
	{"Service", "MemoryDenyWriteExecute", "yes"},
	{"Service", "RemoveIPC", "yes"},
	{"Service", "SystemCallArchitectures", "native"},
	{"Service", "SystemCallFilter", "@system-service"},
	{"Service", "SystemCallFilter", "~@privileged @resources"},
	{"Service", "SystemCallErrorNumber", "EPERM"},
	{"Install", "WantedBy", "remote-fs.target"},
	{"Install", "Alias", AliasName},
}

// forbiddenDirectives would break the daemon: it must share the host's
// network namespace and initial user namespace, run as root, and see
// /proc/keys.
var forbiddenDirectives = []string{"PrivateNetwork", "PrivateUsers", "ProcSubset", "User", "DynamicUser",
	"NetworkNamespacePath", "AmbientCapabilities"}

func TestUnitDirectives(t *testing.T) {
	data, err := os.ReadFile(UnitName)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != Unit {
		t.Error("embedded Unit differs from the file")
	}
	u := parseUnit(t, string(data))
	for _, d := range requiredDirectives {
		if !slices.Contains(u[d.section][d.key], d.value) {
			t.Errorf("[%s] %s=%s missing (have %q)", d.section, d.key, d.value, u[d.section][d.key])
		}
	}
	for _, k := range forbiddenDirectives {
		if v, ok := u["Service"][k]; ok {
			t.Errorf("[Service] %s=%q must not be set", k, v)
		}
	}
	// CapabilityBoundingSet must hold exactly CAP_NET_ADMIN.
	if v := u["Service"]["CapabilityBoundingSet"]; len(v) != 1 {
		t.Errorf("CapabilityBoundingSet set %d times: %q", len(v), v)
	}
	// The keyring system calls must stay allowed.
	for _, f := range u["Service"]["SystemCallFilter"] {
		if strings.HasPrefix(f, "~") && strings.Contains(f, "@keyring") {
			t.Errorf("SystemCallFilter=%s denies @keyring", f)
		}
	}
}

func TestTPMDropIn(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("tlshd-go.service.d", "tpm.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != TPMDropIn {
		t.Error("embedded TPMDropIn differs from the file")
	}
	u := parseUnit(t, string(data))
	for k, want := range map[string]string{"PrivateDevices": "no", "DevicePolicy": "closed", "DeviceAllow": "/dev/tpmrm0 rw"} {
		if !slices.Equal(u["Service"][k], []string{want}) {
			t.Errorf("tpm.conf %s = %q, want %q", k, u["Service"][k], want)
		}
	}
	if len(u["Service"]) != 3 || len(u) != 1 {
		t.Errorf("tpm.conf sets more than the device settings: %v", u)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9]+\.[0-9]+)`)

// exposure runs systemd-analyze security on a unit file in dir.
func exposure(t *testing.T, dir string) float64 {
	t.Helper()
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	cmd := exec.Command(bin, "security", "--offline=true", "--no-pager", UnitName)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	m := exposureRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	score, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exposure %.1f", score)
	return score
}

// TestExposure measures the unit alone. systemd-analyze --offline also
// reads drop-ins from a "<unit>.d" directory beside the unit file, so the
// unit is copied to an empty directory first.
func TestExposure(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, UnitName), []byte(Unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if s := exposure(t, dir); s > 2.0 {
		t.Errorf("exposure level %.1f, want at most 2.0", s)
	}
}

// TestExposureTPM measures the unit with its TPM drop-in.
func TestExposureTPM(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, UnitName), []byte(Unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, UnitName+".d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, UnitName+".d", "tpm.conf"), []byte(TPMDropIn), 0o644); err != nil {
		t.Fatal(err)
	}
	if s := exposure(t, dir); s > 2.0 {
		t.Errorf("exposure level with tpm.conf %.1f, want at most 2.0", s)
	}
}
