package e2e

// The operator's kit in deploy/: the systemd unit is hardened and starts
// the container build's static binary with the example production config
// and its secrets as credentials (PostgreSQL, Redis and TLS on this
// machine; no network, no systemd, no docker needed); the alerting rules
// pass promtool and their unit tests; every metric the rules and the
// dashboard use is one a real daemon exports.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/elf"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/shlex"
	"gopkg.in/yaml.v3"

	"github.com/rotary-secrets/rotary/plugins/examples/template/rotator"
)

const (
	unitPath      = "../deploy/rotary.service"
	dockerfile    = "../deploy/Dockerfile"
	deployConfig  = "../deploy/rotary.yaml"
	alertRules    = "../deploy/prometheus/rotary-alerts.yaml"
	alertTests    = "../deploy/prometheus/rotary-alerts_test.yaml"
	dashboardPath = "../deploy/grafana/rotary.json"
	// credsPath is where systemd puts the unit's credentials
	// ($CREDENTIALS_DIRECTORY of rotary.service); the config names them there.
	credsPath = "/run/credentials/rotary.service"
)

// ---- the unit file ----

// unitEntry is one Key=Value line of a unit file.
type unitEntry struct{ section, key, value string }

type unitFile []unitEntry

// parseUnit reads a systemd unit: [Section] headers, Key=Value lines,
// comments (# and ;) and continuation lines ending in a backslash.
func parseUnit(text string) (unitFile, error) {
	var u unitFile
	section := ""
	var cont strings.Builder
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if cont.Len() > 0 {
			line = cont.String() + " " + line
			cont.Reset()
		}
		if strings.HasSuffix(line, "\\") {
			cont.WriteString(strings.TrimSuffix(line, "\\"))
			continue
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				return nil, fmt.Errorf("line %d: %q is not Key=Value inside a section", i+1, line)
			}
			u = append(u, unitEntry{section, strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	}
	return u, nil
}

// values returns every value of key in [Service], in order. An empty
// assignment resets the list, as systemd does for list settings.
func (u unitFile) values(key string) []string {
	var out []string
	for _, e := range u {
		if e.section == "Service" && e.key == key {
			if e.value == "" {
				out = out[:0]
				continue
			}
			out = append(out, e.value)
		}
	}
	return out
}

// set reports whether [Service] assigns key at all (even empty).
func (u unitFile) set(key string) bool {
	return slices.ContainsFunc(u, func(e unitEntry) bool { return e.section == "Service" && e.key == key })
}

// last returns the last value of key in [Service].
func (u unitFile) last(key string) string {
	v := u.values(key)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// credentials returns the unit's LoadCredential= IDs and their sources.
func (u unitFile) credentials() map[string]string {
	out := map[string]string{}
	for _, v := range u.values("LoadCredential") {
		id, src, _ := strings.Cut(v, ":")
		out[id] = src
	}
	return out
}

// environment returns the unit's Environment= assignments.
func (u unitFile) environment() []string {
	var out []string
	for _, v := range u.values("Environment") {
		words, err := shlex.Split(v)
		if err != nil {
			words = []string{v}
		}
		out = append(out, words...)
	}
	return out
}

// hardened lists the [Service] settings the unit must have, each a check
// that returns what is wrong ("" when fine).
var hardened = []struct {
	key   string
	check func(u unitFile) string
}{
	{"User", is("User", "rotary")},
	{"Group", is("Group", "rotary")},
	{"NoNewPrivileges", is("NoNewPrivileges", "yes")},
	{"ProtectSystem", is("ProtectSystem", "strict")},
	{"ProtectHome", is("ProtectHome", "yes")},
	{"PrivateTmp", is("PrivateTmp", "yes")},
	{"PrivateDevices", is("PrivateDevices", "yes")},
	{"StateDirectory", is("StateDirectory", "rotary")},
	{"StateDirectoryMode", is("StateDirectoryMode", "0700")},
	{"UMask", is("UMask", "0077")},
	{"MemoryDenyWriteExecute", is("MemoryDenyWriteExecute", "yes")},
	{"LockPersonality", is("LockPersonality", "yes")},
	{"RestrictNamespaces", is("RestrictNamespaces", "yes")},
	{"RestrictRealtime", is("RestrictRealtime", "yes")},
	{"RestrictSUIDSGID", is("RestrictSUIDSGID", "yes")},
	{"ProtectKernelTunables", is("ProtectKernelTunables", "yes")},
	{"ProtectKernelModules", is("ProtectKernelModules", "yes")},
	{"ProtectKernelLogs", is("ProtectKernelLogs", "yes")},
	{"ProtectControlGroups", is("ProtectControlGroups", "yes")},
	{"ProtectClock", is("ProtectClock", "yes")},
	{"SystemCallArchitectures", is("SystemCallArchitectures", "native")},
	// rotary stops its plugins itself: SIGTERM goes to the daemon only.
	{"KillMode", is("KillMode", "mixed")},
	{"CapabilityBoundingSet", func(u unitFile) string {
		if !u.set("CapabilityBoundingSet") || len(u.values("CapabilityBoundingSet")) != 0 {
			return "want CapabilityBoundingSet= (empty: no capabilities at all)"
		}
		return ""
	}},
	{"RestrictAddressFamilies", func(u unitFile) string {
		var fams []string
		for _, v := range u.values("RestrictAddressFamilies") {
			fams = append(fams, strings.Fields(v)...)
		}
		sort.Strings(fams)
		if !slices.Equal(fams, []string{"AF_INET", "AF_INET6", "AF_UNIX"}) {
			return fmt.Sprintf("RestrictAddressFamilies = %v, want AF_UNIX AF_INET AF_INET6 (TCP, and the plugins' unix sockets)", fams)
		}
		return ""
	}},
	{"SystemCallFilter", func(u unitFile) string {
		if !slices.Contains(u.values("SystemCallFilter"), "@system-service") {
			return "want SystemCallFilter=@system-service"
		}
		return ""
	}},
	{"LoadCredential", func(u unitFile) string {
		if !strings.HasPrefix(u.credentials()["root-key"], "/") {
			return "want LoadCredential=root-key:/absolute/path (the root key as a credential)"
		}
		return ""
	}},
	{"Environment", func(u unitFile) string {
		tokenFile := false
		for _, kv := range u.environment() {
			k, v, _ := strings.Cut(kv, "=")
			switch {
			case k == "ROTARY_ROOT_TOKEN" || k == "ROTARY_TOKEN" || strings.Contains(k, "ROOT_KEY"):
				return fmt.Sprintf("Environment sets %s: secrets go in credentials, never in the unit", k)
			case k == "ROTARY_ROOT_TOKEN_FILE" && v == "%d/root-token":
				tokenFile = true
			}
		}
		switch {
		case !tokenFile:
			return "want Environment=ROTARY_ROOT_TOKEN_FILE=%d/root-token (the root token from its credential)"
		case u.credentials()["root-token"] == "":
			return "ROTARY_ROOT_TOKEN_FILE names %d/root-token but no LoadCredential=root-token:…"
		}
		return ""
	}},
}

func is(key, want string) func(unitFile) string {
	return func(u unitFile) string {
		if got := u.last(key); got != want {
			return fmt.Sprintf("%s = %q, want %q", key, got, want)
		}
		return ""
	}
}

// unitProblems returns what the unit lacks, one line per setting.
func unitProblems(u unitFile) []string {
	var out []string
	for _, h := range hardened {
		if p := h.check(u); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// credentialRefs returns the credential IDs a config text names under
// /run/credentials/rotary.service/.
func credentialRefs(config string) []string {
	re := regexp.MustCompile(regexp.QuoteMeta(credsPath) + `/([A-Za-z0-9_.-]+)`)
	var ids []string
	for _, m := range re.FindAllStringSubmatch(config, -1) {
		if !slices.Contains(ids, m[1]) {
			ids = append(ids, m[1])
		}
	}
	return ids
}

// missingCredentials returns the IDs the config names that the unit does
// not load.
func missingCredentials(u unitFile, config string) []string {
	creds := u.credentials()
	var out []string
	for _, id := range credentialRefs(config) {
		if _, ok := creds[id]; !ok {
			out = append(out, id)
		}
	}
	return out
}

// systemdVerify runs systemd-analyze verify on a unit text (ExecStart's
// program replaced by one that exists here) and returns what it says.
func systemdVerify(t *testing.T, text string) string {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze (Debian package systemd) is needed to check the unit: %v", err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rotary.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "/usr/local/bin/rotary", sh)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, sa, "verify", path).CombinedOutput()
	if err != nil && len(out) == 0 {
		t.Fatalf("systemd-analyze verify: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func readRepoFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func loadUnit(t testing.TB, text string) unitFile {
	t.Helper()
	u, err := parseUnit(text)
	if err != nil {
		t.Fatalf("parse %s: %v", unitPath, err)
	}
	return u
}

// TestDeployUnitHardened: deploy/rotary.service has every hardening
// setting rotary tolerates, loads every credential the example config
// names, and systemd-analyze verify finds nothing to say about it; each
// setting removed from the unit is reported (the negative controls), as
// are a secret put in Environment=, a widened address family list, a
// credential the config names but the unit does not load, and (by
// systemd-analyze) a misspelt key and a bad boolean.
func TestDeployUnitHardened(t *testing.T) {
	t.Parallel()
	text := readRepoFile(t, unitPath)
	u := loadUnit(t, text)
	if p := unitProblems(u); len(p) > 0 {
		t.Fatalf("%s:\n  %s", unitPath, strings.Join(p, "\n  "))
	}
	config := readRepoFile(t, deployConfig)
	if len(credentialRefs(config)) < 3 {
		t.Fatalf("deploy/rotary.yaml names credentials %v, want at least root-key, tls-key and db-password", credentialRefs(config))
	}
	if m := missingCredentials(u, config); len(m) > 0 {
		t.Fatalf("deploy/rotary.yaml names credentials the unit does not load: %v", m)
	}

	// systemd's own parser knows every key and value (a misspelt
	// directive is only a warning to systemd: the service would start
	// without it).
	if out := systemdVerify(t, text); out != "" {
		t.Fatalf("systemd-analyze verify %s:\n%s", unitPath, out)
	}
	if out := systemdVerify(t, text+"\n[Service]\nProtectSytem=strict\nNoNewPrivileges=maybe\n"); !strings.Contains(out, "ProtectSytem") || !strings.Contains(out, "maybe") {
		t.Fatalf("systemd-analyze verify of a unit with a misspelt key and a bad boolean said %q, want both named", out)
	}

	// Negative controls: the checks see each setting go.
	for _, h := range hardened {
		var kept []string
		for _, line := range strings.Split(text, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), h.key+"=") {
				kept = append(kept, line)
			}
		}
		if p := unitProblems(loadUnit(t, strings.Join(kept, "\n"))); len(p) == 0 {
			t.Errorf("the unit without %s= passes the checks", h.key)
		}
	}
	leaky := loadUnit(t, text+"\n[Service]\nEnvironment=ROTARY_ROOT_TOKEN=canary-in-the-unit\n")
	if p := unitProblems(leaky); len(p) == 0 {
		t.Errorf("a unit with Environment=ROTARY_ROOT_TOKEN=… passes the checks")
	}
	widened := loadUnit(t, text+"\n[Service]\nRestrictAddressFamilies=AF_NETLINK\n")
	if p := unitProblems(widened); len(p) == 0 {
		t.Errorf("a unit adding AF_NETLINK passes the checks")
	}
	if m := missingCredentials(u, config+"\nx: "+credsPath+"/not-loaded\n"); !slices.Equal(m, []string{"not-loaded"}) {
		t.Errorf("a config naming a credential the unit does not load: missing = %v, want [not-loaded]", m)
	}
}

// ---- the container build's binary ----

var (
	deployBinOnce sync.Once
	deployBin     string
	deployBinErr  error
)

// dockerBuildCommand returns the environment and arguments of the go
// build in deploy/Dockerfile, and the output path it names.
func dockerBuildCommand(text string) (env, args []string, out string, err error) {
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "RUN ") || !strings.Contains(line, "go build") {
			continue
		}
		words, err := shlex.Split(strings.TrimPrefix(line, "RUN "))
		if err != nil {
			return nil, nil, "", err
		}
		for len(words) > 0 && strings.Contains(words[0], "=") {
			env, words = append(env, words[0]), words[1:]
		}
		if len(words) < 2 || words[0] != "go" || words[1] != "build" {
			return nil, nil, "", fmt.Errorf("%q: want [VAR=value ...] go build ...", line)
		}
		args = words[1:]
		if i := slices.Index(args, "-o"); i >= 0 && i+1 < len(args) {
			out = args[i+1]
		}
		return env, args, out, nil
	}
	return nil, nil, "", fmt.Errorf("no RUN ... go build line")
}

// buildDeployBinary builds rotary exactly as deploy/Dockerfile does, into
// a temporary folder, once per test run.
func buildDeployBinary(t testing.TB) string {
	t.Helper()
	deployBinOnce.Do(func() {
		env, args, out, err := dockerBuildCommand(readRepoFile(t, dockerfile))
		if err != nil {
			deployBinErr = fmt.Errorf("%s: %v", dockerfile, err)
			return
		}
		if !slices.Contains(env, "CGO_ENABLED=0") || out == "" {
			deployBinErr = fmt.Errorf("%s: the go build has env %v and output %q, want CGO_ENABLED=0 and -o", dockerfile, env, out)
			return
		}
		dir, err := os.MkdirTemp("", "rotary-deploy-bin-")
		if err != nil {
			deployBinErr = err
			return
		}
		deployBin = filepath.Join(dir, "rotary")
		args[slices.Index(args, "-o")+1] = deployBin
		cmd := exec.Command("go", args...)
		cmd.Dir = ".." // the Dockerfile's WORKDIR holds the repository (COPY . .)
		cmd.Env = append(os.Environ(), env...)
		if b, err := cmd.CombinedOutput(); err != nil {
			deployBinErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	})
	if deployBinErr != nil {
		t.Fatal(deployBinErr)
	}
	return deployBin
}

// dynamicLinking says why an ELF file is not statically linked ("" when
// it is): a program interpreter (the dynamic loader) or needed libraries.
func dynamicLinking(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, _ := io.ReadAll(p.Open())
			return fmt.Sprintf("has a program interpreter %s", strings.TrimRight(string(b), "\x00")), nil
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Sprintf("needs %v", libs), nil
	}
	return "", nil
}

// TestDeployDockerBuildStatic: the Dockerfile's go build (CGO_ENABLED=0,
// its flags) gives a statically linked binary (no PT_INTERP, no needed
// libraries) that runs; the check reports a dynamically linked program
// (the negative control).
func TestDeployDockerBuildStatic(t *testing.T) {
	t.Parallel()
	bin := buildDeployBinary(t)
	why, err := dynamicLinking(bin)
	if err != nil {
		t.Fatal(err)
	}
	if why != "" {
		t.Fatalf("the Dockerfile's build is not static: %s", why)
	}
	out, err := exec.Command(bin, "server", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--config") {
		t.Fatalf("%s server --help: %v\n%s", bin, err, out)
	}
	// Negative control: a dynamically linked program is reported.
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	if why, err := dynamicLinking(sh); err != nil || why == "" {
		t.Fatalf("dynamicLinking(%s) = %q, %v; want it reported as dynamically linked", sh, why, err)
	}
}

// ---- starting the daemon the way the unit does ----

// deployLayout is a temporary stand-in for the host: /etc/rotary, the
// credentials systemd makes, the state directory and the binary.
type deployLayout struct {
	root, etc, creds, stateRoot, state, plugins, bin, caFile string
	listen                                                   string
}

func newDeployLayout(t *testing.T) *deployLayout {
	t.Helper()
	root := t.TempDir()
	l := &deployLayout{
		root: root, etc: filepath.Join(root, "etc", "rotary"), creds: filepath.Join(root, "run", "credentials", "rotary.service"),
		stateRoot: filepath.Join(root, "var", "lib"), plugins: filepath.Join(root, "plugins"), bin: buildDeployBinary(t),
		caFile: filepath.Join(root, "ca.pem"), listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	l.state = filepath.Join(l.stateRoot, "rotary")
	for _, d := range []string{filepath.Join(l.etc, "credentials"), l.plugins} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// replace maps the host's paths and the unit's specifiers to the layout.
func (l *deployLayout) replace(s string) string {
	return strings.NewReplacer(
		credsPath, l.creds,
		"${CREDENTIALS_DIRECTORY}", l.creds,
		"$CREDENTIALS_DIRECTORY", l.creds,
		"%d", l.creds,
		"%S", l.stateRoot,
		"/etc/rotary", l.etc,
		"/var/lib/rotary", l.state,
		"/usr/local/lib/rotary/plugins", l.plugins,
		"/usr/local/bin/rotary", l.bin,
	).Replace(s)
}

// writeSource writes a credential's source file (root's, mode 0600).
func (l *deployLayout) writeSource(t *testing.T, id, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(l.etc, "credentials", id), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// loadCredentials does what systemd does at the start of the service: a
// copy of each LoadCredential= source in the credentials directory, mode
// 0400, the directory 0500.
func (l *deployLayout) loadCredentials(t *testing.T, u unitFile) {
	t.Helper()
	if err := os.MkdirAll(l.creds, 0o700); err != nil {
		t.Fatal(err)
	}
	for id, src := range u.credentials() {
		b, err := os.ReadFile(l.replace(src))
		if err != nil {
			t.Fatalf("LoadCredential=%s:%s: %v (systemd would not start the service)", id, src, err)
		}
		if err := os.WriteFile(filepath.Join(l.creds, id), b, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(l.creds, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(l.creds, 0o700) })
}

// command builds the process the unit's ExecStart= starts, with the
// environment systemd gives it: a plain PATH, the unit's Environment=,
// CREDENTIALS_DIRECTORY and STATE_DIRECTORY; nothing of this process's.
func (l *deployLayout) command(t *testing.T, u unitFile) *exec.Cmd {
	t.Helper()
	if u.last("StateDirectory") != "rotary" {
		t.Fatalf("StateDirectory = %q", u.last("StateDirectory"))
	}
	if err := os.MkdirAll(l.state, 0o700); err != nil { // StateDirectoryMode=0700
		t.Fatal(err)
	}
	words, err := shlex.Split(l.replace(u.last("ExecStart")))
	if err != nil || len(words) == 0 {
		t.Fatalf("ExecStart=%q: %v", u.last("ExecStart"), err)
	}
	if words[0] != l.bin {
		t.Fatalf("ExecStart runs %s, want the installed rotary (/usr/local/bin/rotary)", words[0])
	}
	cmd := exec.Command(words[0], words[1:]...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CREDENTIALS_DIRECTORY=" + l.creds, "STATE_DIRECTORY=" + l.state}
	for _, kv := range u.environment() {
		cmd.Env = append(cmd.Env, l.replace(kv))
	}
	cmd.Dir = "/"
	return cmd
}

// adaptConfig turns deploy/rotary.yaml into the config of this machine:
// listen on a free loopback port (still TLS), this machine's PostgreSQL
// (the password still from the db-password credential) and Redis
// (without its TLS and ACL user, with a prefix of the test's own); every
// other setting stays as written.
func (l *deployLayout) adaptConfig(t *testing.T, text, pgDSN, redisPrefix string) string {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	field := func(m *yaml.Node, key string) *yaml.Node {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i+1]
			}
		}
		t.Fatalf("deploy/rotary.yaml has no %q", key)
		return nil
	}
	u, err := url.Parse(pgDSN)
	if err != nil {
		t.Fatal(err)
	}
	field(root, "listen").Value = l.listen
	field(field(root, "store"), "postgres").Value = fmt.Sprintf("%s://%s:$file{%s/db-password}@%s%s?%s",
		u.Scheme, u.User.Username(), credsPath, u.Host, u.Path, u.RawQuery)
	r := field(root, "redis")
	*r = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Value: "url"}, {Kind: yaml.ScalarNode, Value: "redis://127.0.0.1:6379"},
		{Kind: yaml.ScalarNode, Value: "prefix"}, {Kind: yaml.ScalarNode, Value: redisPrefix, Style: yaml.DoubleQuotedStyle},
	}}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return l.replace(string(out))
}

// deployFixture lays out everything deploy/rotary.service needs: the
// credentials' sources (root key, root token, TLS key, database and Redis
// passwords), the TLS certificate, the adapted config.
type deployFixture struct {
	*deployLayout
	unit        unitFile
	rootToken   string
	redisPrefix string
}

func newDeployFixture(t *testing.T) *deployFixture {
	t.Helper()
	l := newDeployLayout(t)
	u := loadUnit(t, readRepoFile(t, unitPath))
	f := &deployFixture{deployLayout: l, unit: u, rootToken: "deploy-root-" + randHex(24), redisPrefix: uniq("e2e-deploy") + ":"}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	l.writeSource(t, "root-key", base64.StdEncoding.EncodeToString(key)+"\n")
	l.writeSource(t, "root-token", f.rootToken+"\n")
	l.writeSource(t, "db-password", randHex(12)+"\n")
	l.writeSource(t, "redis-password", randHex(12)+"\n")
	caPEM, certPEM, keyPEM := deployTLS(t)
	l.writeSource(t, "tls-key", string(keyPEM))
	for path, b := range map[string][]byte{filepath.Join(l.etc, "tls.crt"): certPEM, l.caFile: caPEM} {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fx := newPGFixture(t)
	cfg := l.adaptConfig(t, readRepoFile(t, deployConfig), fx.dsn, f.redisPrefix)
	if err := os.WriteFile(filepath.Join(l.etc, "rotary.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// deployTLS makes a CA and a server certificate for 127.0.0.1 it signed.
func deployTLS(t *testing.T) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rotary deploy test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// confineScript runs "$@" the way the unit confines the daemon, as far
// as util-linux can without systemd: in a mount namespace where the file
// system is read-only but the state directory (ProtectSystem=strict with
// StateDirectory=) and /tmp is a private tmpfs (PrivateTmp=yes; the
// folders of the test the daemon reads are carried over, read-only), as an
// unprivileged user without capabilities or a way to gain any (User=,
// CapabilityBoundingSet=, NoNewPrivileges=yes).
const confineScript = `set -e
state=$1 uid=$2 keep=$3; shift 3
mount --bind "$state" "$state"
IFS=:
for d in $keep; do mount --rbind "$d" "$d"; mount -o remount,bind,ro "$d"; done
mount -o remount,bind,ro /
mount -t tmpfs -o mode=0700 tmpfs /srv
i=0
for d in $keep; do i=$((i+1)); mkdir /srv/$i; mount --rbind "$d" /srv/$i; done
mount -t tmpfs -o mode=1777 tmpfs /tmp
i=0
for d in $keep; do i=$((i+1)); mkdir -p "$d"; mount --rbind /srv/$i "$d"; mount -o remount,bind,ro "$d"; done
unset IFS
exec setpriv --reuid="$uid" --regid="$uid" --clear-groups --no-new-privs --bounding-set=-all --inh-caps=-all -- "$@"`

// nobodyUID stands in for the unit's User=rotary.
const nobodyUID = 65534

// confine wraps cmd in confineScript and hands the credentials and the
// state directory to the unprivileged user, as systemd does. It needs
// root (a mount namespace, setuid); the test machine runs tests as root.
// It reports false, changing nothing, when the test does not run as root:
// then the daemon runs as the test's own unprivileged user, unconfined.
func (l *deployLayout) confine(t *testing.T, cmd *exec.Cmd) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Logf("not root: the daemon runs as this user, without the unit's mount and privilege restrictions")
		return false
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("unshare (util-linux) is needed to confine the daemon as the unit does: %v", err)
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed to confine the daemon as the unit does: %v", err)
	}
	// The folders on the way are traversable, the credentials and the
	// state the user's (systemd: 0500/0400 and StateDirectoryMode=0700).
	for _, d := range []string{filepath.Dir(l.root), l.root, filepath.Join(l.root, "etc"), l.etc, filepath.Join(l.root, "run"),
		filepath.Dir(l.creds), filepath.Join(l.root, "var"), l.stateRoot, filepath.Dir(l.bin), l.plugins} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{l.creds, l.state} {
		err := filepath.Walk(p, func(path string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, nobodyUID, nobodyUID)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	keep := strings.Join([]string{l.root, filepath.Dir(l.bin)}, ":")
	args := append([]string{unshare, "-m", "--propagation", "private", "sh", "-c", confineScript, "sh", l.state, strconv.Itoa(nobodyUID), keep}, cmd.Args...)
	cmd.Path, cmd.Args = unshare, args
	return true
}

// runUntilExit runs cmd, which must exit on its own within a minute, and
// returns its exit code and output.
func runUntilExit(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("rotary did not exit within a minute:\n%s", out.String())
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// TestDeployUnitStartsDaemon starts the Dockerfile's static binary the
// way deploy/rotary.service does: its ExecStart= and Environment=, the
// credentials of its LoadCredential= lines in a credentials directory,
// its StateDirectory=, and deploy/rotary.yaml with this machine's
// PostgreSQL and Redis; as root, confined as the unit confines it (a
// read-only file system but the state directory, an unprivileged user,
// no capabilities, no new privileges; checked in /proc, and the sandbox
// itself checked with a probe that may write only the state directory).
// The daemon serves HTTPS with the certificate of
// the config and the key from its credential, and the root token from the
// root-token credential works: a secret is created, rotated and read, and
// the rotation reaches Redis; a rotator plugin the confined daemon execs
// rotates too. A wrong token is refused. Negative controls:
// the daemon refuses to start, with an error naming the problem and the
// file, when the root-key or root-token credential is missing or the root
// key is readable by the group.
func TestDeployUnitStartsDaemon(t *testing.T) {
	t.Run("serves with the credentials", func(t *testing.T) {
		f := newDeployFixture(t)
		f.loadCredentials(t, f.unit)
		// A rotator plugin, root's, in plugin_dir; the system it rotates
		// (an account store) in the state directory, the daemon's user's.
		plugin := filepath.Join(f.plugins, "testplugin")
		if b, err := os.ReadFile(pluginBinary(t, "testplugin")); err != nil {
			t.Fatal(err)
		} else if err := os.WriteFile(plugin, b, 0o755); err != nil {
			t.Fatal(err)
		}
		accounts := filepath.Join(f.state, "accounts")
		if err := os.MkdirAll(accounts, 0o700); err != nil {
			t.Fatal(err)
		}
		cmd := f.command(t, f.unit)
		confined := f.confine(t, cmd)
		if confined {
			// The sandbox is real: in it, nothing outside the state
			// directory is writable, and the user holds no capability.
			private := "rotary-private-tmp-" + randHex(6)
			probe := exec.Command("sh", "-c", `touch "$1/state-ok" && ! touch "$2/outside" 2>/dev/null && ! touch /rootfs-write 2>/dev/null && touch "/tmp/$3" && test -r "$4" && grep -q '^CapEff:[[:space:]]*0*$' /proc/self/status`,
				"sh", f.state, f.root, private, filepath.Join(f.creds, "root-key"))
			f.confine(t, probe)
			if out, err := probe.CombinedOutput(); err != nil {
				t.Fatalf("the confinement does not hold (state writable, the rest read-only, a private /tmp, credentials readable, no capabilities): %v\n%s", err, out)
			}
			if err := os.Remove(filepath.Join(f.state, "state-ok")); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(os.TempDir(), private)); err == nil {
				t.Fatal("the sandbox's /tmp is the host's")
			}
		}
		var logs syncBuffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			select {
			case <-done:
			default:
				_ = cmd.Process.Kill()
				<-done
			}
			if t.Failed() {
				t.Logf("daemon output:\n%s", logs.String())
			}
		})
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(readRepoFile(t, f.caFile)))
		hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		addr := "https://" + f.listen
		waitFor(t, readyTimeout, "the daemon to listen and be ready over HTTPS", func() bool {
			select {
			case <-done:
				t.Fatalf("rotary exited with %d before it was ready:\n%s", cmd.ProcessState.ExitCode(), logs.String())
			default:
			}
			if !strings.Contains(logs.String(), "rotary is listening") {
				return false
			}
			resp, err := hc.Get(addr + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		if confined {
			status := readRepoFile(t, fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
			for _, want := range []string{fmt.Sprintf("Uid:\t%d\t%d", nobodyUID, nobodyUID), "NoNewPrivs:\t1", "CapBnd:\t0000000000000000", "CapEff:\t0000000000000000"} {
				if !strings.Contains(status, want) {
					t.Fatalf("the daemon's /proc status lacks %q:\n%s", want, status)
				}
			}
		}
		if !strings.Contains(logs.String(), `"addr":"`+addr+`"`) {
			t.Fatalf("the daemon does not say it listens on %s (JSON log, as the unit asks):\n%s", addr, logs.String())
		}

		// The CLI trusts the test CA through SSL_CERT_FILE.
		t.Setenv("SSL_CERT_FILE", f.caFile)
		c := cli{t: t, addr: addr, token: f.rootToken}
		name := uniq("deploy/app")
		c.ok("secret", "create", name, "--type", "password", "--value", "first-password-0123456789")
		c.ok("rotation", "set", name, "--rotator", "random", "--schedule", "@every 24h")
		c.ok("rotate", name, "--wait")
		if v := currentVersion(t, c, name); v != 2 {
			t.Fatalf("version after the rotation = %d, want 2", v)
		}
		waitFor(t, 30*time.Second, "the rotation's version in Redis", func() bool {
			out, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", "6379", "GET", f.redisPrefix+"version:"+name).Output()
			return err == nil && strings.TrimSpace(string(out)) == "2"
		})
		// A plugin, exec'd by the confined daemon, rotates too.
		c.ok("plugin", "register", "tp", "--path", plugin)
		basicAuthSecret(t, c, "tp", accounts, "deploy/plugin", "first-pw-1")
		if confined {
			err := filepath.Walk(accounts, func(path string, _ os.FileInfo, err error) error {
				if err != nil {
					return err
				}
				return os.Lchown(path, nobodyUID, nobodyUID)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		c.ok("rotate", "deploy/plugin", "--wait")
		if v := currentVersion(t, c, "deploy/plugin"); v != 2 {
			t.Fatalf("plugin secret version after the rotation = %d, want 2", v)
		}
		if err := (rotator.Store{Dir: accounts}).Check("deploy-plugin", currentPassword(t, c, "deploy/plugin")); err != nil {
			t.Fatalf("the plugin's new password does not log in: %v", err)
		}
		wrong := cli{t: t, addr: addr, token: "deploy-wrong-" + randHex(24)}
		if _, _, code := wrong.run("secret", "list"); code == 0 {
			t.Fatal("a token that is not the credential's was accepted")
		}
		// The token came from the credential: none was written to the state.
		if _, err := os.Stat(filepath.Join(f.state, "root-token")); err == nil {
			t.Fatal("the daemon wrote a root token file although the unit gave it one")
		}
		for _, secret := range []string{f.rootToken, readRepoFile(t, filepath.Join(f.etc, "credentials", "root-key"))} {
			if strings.Contains(logs.String(), strings.TrimSpace(secret)) {
				t.Fatal("the daemon's output holds a credential")
			}
		}

		// systemctl stop: SIGTERM (KillMode=mixed: to the daemon only).
		if sig := f.unit.last("KillSignal"); sig != "SIGTERM" {
			t.Fatalf("KillSignal = %q", sig)
		}
		limit, err := time.ParseDuration(f.unit.last("TimeoutStopSec"))
		if err != nil {
			t.Fatalf("TimeoutStopSec: %v", err)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(limit):
			t.Fatalf("rotary did not stop within TimeoutStopSec=%v of SIGTERM", limit)
		}
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("rotary exited %d after SIGTERM, want 0", code)
		}
	})

	refusals := []struct {
		name    string
		prepare func(f *deployFixture)
		want    []string
	}{
		{"root-key credential missing", func(f *deployFixture) {
			if err := os.Remove(filepath.Join(f.creds, "root-key")); err != nil {
				t.Fatal(err)
			}
		}, []string{"root key file", "/root-key", "does not exist"}},
		{"root-token credential missing", func(f *deployFixture) {
			if err := os.Remove(filepath.Join(f.creds, "root-token")); err != nil {
				t.Fatal(err)
			}
		}, []string{"ROTARY_ROOT_TOKEN_FILE", "/root-token", "no such file"}},
		{"db-password credential missing", func(f *deployFixture) {
			if err := os.Remove(filepath.Join(f.creds, "db-password")); err != nil {
				t.Fatal(err)
			}
		}, []string{"store.postgres", "/db-password"}},
		{"root key readable by the group", func(f *deployFixture) {
			if err := os.Chmod(filepath.Join(f.creds, "root-key"), 0o440); err != nil {
				t.Fatal(err)
			}
		}, []string{"root_key.file", "/root-key", "group or others"}},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			f := newDeployFixture(t)
			f.loadCredentials(t, f.unit)
			if err := os.Chmod(f.creds, 0o700); err != nil {
				t.Fatal(err)
			}
			tt.prepare(f)
			cmd := f.command(t, f.unit)
			f.confine(t, cmd)
			code, out := runUntilExit(t, cmd)
			if code == 0 {
				t.Fatalf("rotary started and exited 0, want a refusal:\n%s", out)
			}
			line := strings.TrimSpace(out)
			if i := strings.LastIndex(line, "\n"); i >= 0 {
				line = line[i+1:]
			}
			t.Logf("exit %d: %s", code, line)
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Fatalf("exit %d, last line %q: want it to mention %q\n%s", code, line, w, out)
				}
			}
		})
	}
}

// ---- Prometheus rules and the Grafana dashboard ----

func promtool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (Debian package prometheus; run scripts/services.sh): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	return string(out), err
}

// TestDeployAlertRules: promtool check rules accepts
// deploy/prometheus/rotary-alerts.yaml and promtool test rules passes its
// unit tests (each alert fires on its series and not on healthy ones).
// Negative controls: a rule that fires on healthy series, one that never
// fires, and one that does not parse each fail promtool.
func TestDeployAlertRules(t *testing.T) {
	t.Parallel()
	if out, err := promtool(t, "check", "rules", alertRules); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if out, err := promtool(t, "test", "rules", alertTests); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	rules := readRepoFile(t, alertRules)
	tests := readRepoFile(t, alertTests)
	mutations := []struct {
		name, old, new, cmd, want string
	}{
		{"fires on healthy series", "max without (instance) (rotary_rotations_failing) > 0", "max without (instance) (rotary_rotations_failing) >= 0", "test", "RotaryRotationFailing"},
		{"never fires", "(increase(rotary_audit_write_failures_total[5m])) > 0", "(increase(rotary_audit_write_failures_total[5m])) > 1000", "test", "RotaryAuditWriteFailures"},
		{"overdue threshold too high", "(rotary_rotation_overdue_seconds) > 3600", "(rotary_rotation_overdue_seconds) > 86400", "test", "RotaryRotationOverdue"},
		{"does not parse", "increase(rotary_plugin_restarts_total[15m]) > 0", "increase(rotary_plugin_restarts_total[15m] > 0", "check", "RotaryPluginRestarting"},
	}
	for _, m := range mutations {
		if !strings.Contains(rules, m.old) {
			t.Fatalf("mutation %q: the rules no longer hold %q", m.name, m.old)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "rotary-alerts.yaml"), []byte(strings.Replace(rules, m.old, m.new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "rotary-alerts_test.yaml"), []byte(tests), 0o644); err != nil {
			t.Fatal(err)
		}
		var out string
		var err error
		if m.cmd == "check" {
			out, err = promtool(t, "check", "rules", filepath.Join(dir, "rotary-alerts.yaml"))
		} else {
			out, err = promtool(t, "test", "rules", filepath.Join(dir, "rotary-alerts_test.yaml"))
		}
		if err == nil || !strings.Contains(out, m.want) && m.cmd == "test" {
			t.Errorf("mutation %q: promtool %s rules = %v, want a failure naming %s\n%s", m.name, m.cmd, err, m.want, out)
		}
	}
}

var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan", "Inf", "NaN"}
)

// promqlMetricNames returns the metric names a PromQL expression selects
// (functions, keywords, label names and values left out). A Grafana
// label_values(METRIC, LABEL) query gives METRIC.
func promqlMetricNames(expr string) []string {
	if strings.HasPrefix(strings.TrimSpace(expr), "label_values(") {
		expr, _, _ = strings.Cut(strings.TrimPrefix(strings.TrimSpace(expr), "label_values("), ",")
	}
	s := promStrings.ReplaceAllString(expr, " ")
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRanges.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && (s[loc[0]-1] == '$' || s[loc[0]-1] == '.' || s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9') {
			continue // $variable, 1e3, 0.95
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") || slices.Contains(promKeywords, name) {
			continue // a function or a keyword
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}

// kitExpressions returns every PromQL expression of the alert rules and
// the dashboard (panel targets and template queries), by where it is.
func kitExpressions(t *testing.T) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Record, Expr string
			}
		}
	}
	if err := yaml.Unmarshal([]byte(readRepoFile(t, alertRules)), &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs["rule "+r.Alert+r.Record] = r.Expr
		}
	}
	var dash any
	if err := json.Unmarshal([]byte(readRepoFile(t, dashboardPath)), &dash); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "query" && strings.Contains(s, "label_values")) {
					exprs["dashboard "+path+"."+k] = s
				}
				walk(path+"."+k, x)
			}
		case []any:
			for i, x := range v {
				walk(path+"["+strconv.Itoa(i)+"]", x)
			}
		}
	}
	walk("", dash)
	return exprs
}

// exportedNames returns the sample names of a /metrics exposition.
func exportedNames(text string) map[string]bool {
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// unexported returns the names exprs use that the daemon does not export
// (up is Prometheus' own), as "name (where)".
func unexported(exprs map[string]string, exported map[string]bool) []string {
	var out []string
	for where, e := range exprs {
		for _, n := range promqlMetricNames(e) {
			if n != "up" && !exported[n] {
				out = append(out, n+" ("+where+")")
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestDeployMetricsExported: every metric the alert rules and the Grafana
// dashboard use is exported by a real daemon once it has done what the
// panels show: a rotation, a plugin that crashed mid-rotation and was
// restarted (the retried rotation succeeds), requests. The dashboard is
// one JSON document whose every panel has a query. Negative control: a
// name the daemon does not export is reported.
func TestDeployMetricsExported(t *testing.T) {
	t.Parallel()
	exprs := kitExpressions(t)
	var fromRules, fromDashboard int
	for where := range exprs {
		if strings.HasPrefix(where, "rule ") {
			fromRules++
		} else {
			fromDashboard++
		}
	}
	if fromRules < 8 || fromDashboard < 15 {
		t.Fatalf("found %d rule and %d dashboard expressions, want the whole kit", fromRules, fromDashboard)
	}

	s := startDev(t)
	c := s.root(t)
	once := filepath.Join(t.TempDir(), "crashed-once")
	c.ok("plugin", "register", "crashy", "--path", pluginBinary(t, "testplugin"),
		"--env", "TESTPLUGIN_MODE=crash-set", "--env", "TESTPLUGIN_ONCE="+once)
	acc := t.TempDir()
	basicAuthSecret(t, c, "crashy", acc, "deploy/crash", "first-pw-1")
	c.fail(exitFailure, nil, "rotate", "deploy/crash", "--wait")
	waitFor(t, 90*time.Second, "the retried plugin rotation to succeed", func() bool {
		return currentVersion(t, c, "deploy/crash") == 2
	})
	name := uniq("deploy/metrics")
	c.ok("secret", "create", name, "--type", "password", "--value", "first-password-0123456789")
	c.ok("rotation", "set", name, "--rotator", "random", "--schedule", "@every 24h")
	c.ok("rotate", name, "--wait")

	code, body := s.httpDo(t, http.MethodGet, "/metrics", "", "", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	exported := exportedNames(string(body))
	if m := unexported(exprs, exported); len(m) > 0 {
		t.Fatalf("the kit uses metrics the daemon does not export:\n  %s", strings.Join(m, "\n  "))
	}
	for _, n := range []string{"rotary_plugin_restarts_total", "rotary_audit_write_failures_total", "rotary_rotation_overdue_seconds"} {
		if !exported[n] {
			t.Errorf("%s is not exported", n)
		}
	}
	if m := regexp.MustCompile(`(?m)^rotary_plugin_restarts_total\{plugin="crashy"\} (\S+)$`).FindSubmatch(body); m == nil || string(m[1]) == "0" {
		t.Errorf("rotary_plugin_restarts_total does not count the crashed plugin's restart: %q", m)
	}

	// Negative control: a misspelt name is reported.
	bad := map[string]string{"rule X": `sum by (job) (rate(rotary_rotation_total{result="failed"}[5m])) > 0 and on (job) up == 1`}
	if m := unexported(bad, exported); !slices.Equal(m, []string{"rotary_rotation_total (rule X)"}) {
		t.Fatalf("unexported(misspelt) = %v, want [rotary_rotation_total (rule X)]", m)
	}
	if got := promqlMetricNames(`histogram_quantile(0.95, sum by (le, route) (rate(rotary_http_request_duration_seconds_bucket{job=~"$job"}[$__rate_interval])))`); !slices.Equal(got, []string{"rotary_http_request_duration_seconds_bucket"}) {
		t.Fatalf("promqlMetricNames(histogram) = %v", got)
	}
}
