package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// storeLock keeps a second daemon off a SQLite store another one uses: an
// exclusive flock on a file beside the database (DB.lock), held while the
// daemon runs and naming its pid and address. The kernel drops the lock
// when the process ends however it ends, so a file left by a killed daemon
// never blocks (the lock, not the file's existence, decides). The file is
// opened close-on-exec: plugins and hooks the daemon starts do not inherit
// it. PostgreSQL stores are meant to be shared and take no lock.
type storeLock struct {
	f    *os.File
	path string
}

// lockHolder is what the lock file says about the daemon holding it.
type lockHolder struct {
	PID  int    `json:"pid"`
	Addr string `json:"addr,omitempty"`
}

// lockPath is the lock file of the SQLite database db.
func lockPath(db string) string { return db + ".lock" }

// errStoreInUse is returned when another daemon holds the store's lock.
var errStoreInUse = errors.New("in use by another rotary server")

// acquireStoreLock takes the lock of the SQLite database db, or says
// which daemon holds it.
func acquireStoreLock(db string) (*storeLock, error) {
	path := lockPath(db)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, holderError(f)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	l := &storeLock{f: f, path: path}
	// What the file says only words the refusal of a second daemon; the
	// flock is the lock. A full disk does not stop the daemon here.
	_ = l.write("")
	return l, nil
}

// holderError reads the lock file of a held lock into an error naming
// the daemon that holds it.
func holderError(f *os.File) error {
	var h lockHolder
	b := make([]byte, 512)
	n, _ := f.ReadAt(b, 0)
	if json.Unmarshal(b[:n], &h) != nil || h.PID == 0 {
		return fmt.Errorf("%w (it is starting; its lock file says nothing yet)", errStoreInUse)
	}
	who := fmt.Sprintf("pid %d", h.PID)
	if h.Addr != "" {
		who += ", " + h.Addr
	}
	return fmt.Errorf("%w (%s)", errStoreInUse, who)
}

// write records this process and addr (empty until it listens).
func (l *storeLock) write(addr string) error {
	b, _ := json.Marshal(lockHolder{PID: os.Getpid(), Addr: addr})
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("lock file %s: %w", l.path, err)
	}
	if _, err := l.f.WriteAt(append(b, '\n'), 0); err != nil {
		return fmt.Errorf("lock file %s: %w", l.path, err)
	}
	return nil
}

// release empties the file and drops the lock. Safe on nil.
func (l *storeLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = l.f.Truncate(0)
	_ = l.f.Close() // closing the last descriptor drops the flock
	l.f = nil
}

// storeInUseError words errStoreInUse for the way the store was given:
// --data-dir for a dev daemon, store.sqlite for a config file.
func storeInUseError(cfg Config, err error) error {
	detail := strings.TrimPrefix(err.Error(), errStoreInUse.Error()+" ")
	if cfg.Dev {
		return fmt.Errorf("--data-dir %s is in use by another rotary server %s; stop it or pick another --data-dir",
			displayPath(filepath.Dir(cfg.Store.SQLite)), detail)
	}
	return fmt.Errorf("config: store.sqlite %s is in use by another rotary server %s; stop it or point store.sqlite at another file (several daemons share a store.postgres)",
		displayPath(cfg.Store.SQLite), detail)
}

// displayPath is p relative to the working directory when it lies under
// it (how the user most likely typed it), else p.
func displayPath(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if rel, err := filepath.Rel(wd, p); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}

// listenError words a failed listen: a port in use says so and how to
// pick another.
func listenError(cfg Config, err error) error {
	if !errors.Is(err, unix.EADDRINUSE) {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	host, _, _ := net.SplitHostPort(cfg.Listen)
	how := fmt.Sprintf("--listen %s", net.JoinHostPort(host, "PORT"))
	if cfg.Dev {
		how += " (make run PORT=…)"
	} else {
		how += " or listen: in the config file"
	}
	return fmt.Errorf("listen %s: address already in use; another process listens there: stop it or pick another with %s", cfg.Listen, how)
}

// checkListen reports a listen address another process holds, by
// binding it for a moment (a fixed port only: port 0 is always free).
func checkListen(cfg Config) error {
	if _, port, err := net.SplitHostPort(cfg.Listen); err != nil || port == "0" {
		return nil
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		if errors.Is(err, unix.EADDRINUSE) {
			return listenError(cfg, err)
		}
		return nil // Start says what else is wrong, as it listens
	}
	return ln.Close()
}

// clientAddr is the host:port a client on this machine reaches a listener
// at: a wildcard address (0.0.0.0, ::) becomes the loopback address.
func clientAddr(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(ta.Port))
}

// printDevLines tells the user of a dev daemon, like bao server -dev, the
// lines that point the CLI at it. The root token shows only where a dev
// daemon always printed it (generated on this start, or given by
// --dev-root-token or ROTARY_ROOT_TOKEN); otherwise the line reads it from
// the root token file. Never logged: this goes to standard output.
func (d *Daemon) printDevLines(addr string) {
	w := d.cfg.Stdout
	fmt.Fprintf(w, "\nDevelopment daemon. In another terminal, point the CLI at it:\n\n")
	if dir := cliDir(); dir != "" {
		if q := shellQuote(dir); q == dir {
			fmt.Fprintf(w, "    export PATH=\"%s:$PATH\"\n", dir)
		} else {
			fmt.Fprintf(w, "    export PATH=%s:\"$PATH\"\n", q)
		}
	}
	fmt.Fprintf(w, "    export ROTARY_ADDR=%s\n", shellQuote(addr))
	switch _, statErr := os.Stat(d.cfg.RootTokenFile); {
	case d.cfg.RootToken != "":
		fmt.Fprintf(w, "    export ROTARY_TOKEN=%s\n", shellQuote(d.cfg.RootToken))
	case d.cfg.RootTokenFile != "" && statErr == nil:
		fmt.Fprintf(w, "    export ROTARY_TOKEN=$(cat %s)\n", shellQuote(d.cfg.RootTokenFile))
	default:
		fmt.Fprintf(w, "    # the root token was made on the first start and written to %s, which is gone\n", d.cfg.RootTokenFile)
	}
	fmt.Fprintln(w)
	if d.devToken != "" {
		fmt.Fprintf(w, "Root token: %s\n\n", d.devToken)
	}
}

// cliDir is the folder of this binary when a shell with this process's
// PATH would not find it as rotary (make run starts bin/rotary), else "".
func cliDir() string {
	exe, err := os.Executable()
	if err != nil || filepath.Base(exe) != "rotary" {
		return ""
	}
	if p, err := exec.LookPath("rotary"); err == nil {
		if a, err1 := os.Stat(p); err1 == nil {
			if b, err2 := os.Stat(exe); err2 == nil && os.SameFile(a, b) {
				return ""
			}
		}
	}
	return filepath.Dir(exe)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
