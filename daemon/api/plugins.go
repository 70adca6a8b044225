package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/store"
)

// PluginHost is the daemon's plugin supervisor as the API sees it.
// Registering a plugin runs code on the daemon's host, so every plugin
// route needs admin on the system resource "plugins".
type PluginHost interface {
	// Probe starts the plugin p describes once (its file pinned to
	// p.SHA256, with p.Env as its environment) and returns p with the
	// fields of its start filled in, or why it is not a rotary plugin.
	Probe(ctx context.Context, p store.Plugin) (store.Plugin, error)
	// Stop ends the running process of the plugin, if any, so that its
	// next use starts the registered file.
	Stop(name string)
	// Process reports the running process of the plugin on this daemon:
	// pid, restarts and state ("" when it has not run here).
	Process(name string) (pid, restarts int, state string)
}

var pluginNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidatePluginName checks a plugin name: a lowercase letter or digit,
// then up to 62 of lowercase letters, digits, '_' and '-'.
func ValidatePluginName(name string) error {
	if !pluginNameRE.MatchString(name) {
		return fmt.Errorf("plugin name %q: use 1-63 of a-z, 0-9, '_' and '-', starting with a letter or digit", name)
	}
	return nil
}

var envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

const (
	maxPluginEnv    = 64
	maxPluginEnvLen = 4096
)

// checkPluginEnv validates a plugin's environment list.
func checkPluginEnv(env []string) error {
	if len(env) > maxPluginEnv {
		return fmt.Errorf("env: %d variables; at most %d", len(env), maxPluginEnv)
	}
	seen := map[string]bool{}
	for i, kv := range env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || !envKeyRE.MatchString(k) {
			return fmt.Errorf("env[%d]: not KEY=VALUE with KEY of letters, digits and '_'", i)
		}
		if len(kv) > maxPluginEnvLen {
			return fmt.Errorf("env %s: longer than %d bytes", k, maxPluginEnvLen)
		}
		if strings.HasPrefix(k, "ROTARY_") || strings.HasPrefix(k, "PLUGIN_") {
			return fmt.Errorf("env %s: ROTARY_* and PLUGIN_* variables are reserved", k)
		}
		if seen[k] {
			return fmt.Errorf("env %s: given twice", k)
		}
		seen[k] = true
	}
	return nil
}

// checkPluginFile checks that path names an executable regular file that
// only its owner may change, inside dir when dir is set, and returns its
// hex sha256.
func checkPluginFile(path, dir string) (string, error) {
	if path == "" {
		return "", errors.New("path: required (the absolute path of the plugin executable on the daemon's host)")
	}
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("path %q: not an absolute path", path)
	}
	if filepath.Clean(path) != path {
		return "", fmt.Errorf("path %q: not a clean path (write it as %q)", path, filepath.Clean(path))
	}
	if dir != "" {
		if rel, err := filepath.Rel(dir, path); err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			return "", fmt.Errorf("path %q: outside the plugin folder %s (plugin_dir)", path, dir)
		}
	}
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("path %q: no such file on the daemon's host", path)
	}
	if err != nil {
		return "", fmt.Errorf("path %q: %v", path, errors.Unwrap(err))
	}
	switch {
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("path %q: not a regular file", path)
	case fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("path %q: not executable", path)
	case fi.Mode().Perm()&0o002 != 0:
		return "", fmt.Errorf("path %q: writable by anyone (mode %04o); chmod o-w it", path, fi.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("path %q: %v", path, errors.Unwrap(err))
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("path %q: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (s *Server) pluginRoutes() {
	s.handle("PUT /v1/plugins/{name}", s.registerPlugin)
	s.handle("GET /v1/plugins", s.listPlugins)
	s.handle("GET /v1/plugins/{name}", s.getPlugin)
	s.handle("DELETE /v1/plugins/{name}", s.removePlugin)
}

func (s *Server) pluginJSON(p store.Plugin) client.Plugin {
	out := client.Plugin{
		Name: p.Name, Path: p.Path, SHA256: p.SHA256, Env: orEmpty(p.Env), CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
		Version: p.Version, SecretTypes: orEmpty(p.SecretTypes), Kinds: orEmpty(p.Kinds),
		IdentityFields: orEmpty(p.IdentityFields), LastStartAt: p.LastStartAt, Status: p.Status, LastError: p.LastError,
	}
	if s.cfg.Plugins != nil {
		out.PID, out.Restarts, out.State = s.cfg.Plugins.Process(p.Name)
	}
	return out
}

func orEmpty(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func (s *Server) pluginHost() (PluginHost, error) {
	if s.cfg.Plugins == nil {
		return nil, &httpError{http.StatusNotImplemented, "this daemon runs no plugins"}
	}
	return s.cfg.Plugins, nil
}

func (s *Server) registerPlugin(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("name")
	info(r).target = "plugin/" + name
	if err := authorizeSystem(r, p, auth.SystemPlugins, "register"); err != nil {
		return err
	}
	if err := ValidatePluginName(name); err != nil {
		return badRequest("%s", err)
	}
	host, err := s.pluginHost()
	if err != nil {
		return err
	}
	var req client.RegisterPluginRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := checkPluginEnv(req.Env); err != nil {
		return badRequest("plugin %s: %s", name, err)
	}
	sum, err := checkPluginFile(req.Path, s.cfg.PluginDir)
	if err != nil {
		return badRequest("plugin %s: %s", name, err)
	}
	computed := req.SHA256 == ""
	if !computed {
		want := strings.ToLower(strings.TrimSpace(req.SHA256))
		if b, err := hex.DecodeString(want); err != nil || len(b) != sha256.Size {
			return badRequest("plugin %s: sha256 %q: not a hex sha256 (64 hex digits)", name, req.SHA256)
		}
		if want != sum {
			return badRequest("plugin %s: %s has sha256 %s, not the %s given: refused, nothing ran", name, req.Path, sum, want)
		}
	}
	now := s.now().UTC()
	pl := store.Plugin{Name: name, Path: req.Path, SHA256: sum, Env: req.Env, CreatedAt: now, UpdatedAt: now}
	if len(pl.Env) == 0 {
		pl.Env = nil
	}
	old, err := s.st.GetPlugin(r.Context(), name)
	switch {
	case err == nil:
		pl.CreatedAt = old.CreatedAt
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	started, err := host.Probe(r.Context(), pl)
	if err != nil {
		return badRequest("plugin %s: %s is not a working rotary plugin: %s", name, req.Path, probeProblem(err))
	}
	if err := s.st.PutPlugin(r.Context(), started); err != nil {
		return err
	}
	// The next use starts the file just registered.
	host.Stop(name)
	detail := fmt.Sprintf("path=%s sha256=%s", pl.Path, pl.SHA256)
	if computed {
		detail += " (computed)"
	}
	if len(pl.Env) > 0 {
		keys := make([]string, len(pl.Env))
		for i, kv := range pl.Env {
			keys[i], _, _ = strings.Cut(kv, "=")
		}
		detail += " env=" + strings.Join(keys, ",")
	}
	if old.Name != "" {
		detail += fmt.Sprintf(" replaces path=%s sha256=%s", old.Path, old.SHA256)
	}
	info(r).detail = truncate(detail, 400)
	out := s.pluginJSON(started)
	out.SHA256Computed = computed
	status := http.StatusCreated
	if old.Name != "" {
		status = http.StatusOK
	}
	writeJSON(w, status, out)
	return nil
}

// probeProblem is the first line of a failed start, with go-plugin's
// handshake complaint said plainly.
func probeProblem(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	if strings.Contains(msg, "Unrecognized remote plugin message") {
		msg, _, _ = strings.Cut(msg, "Unrecognized remote plugin message")
		msg += "it did not answer the rotary plugin handshake (a plugin is a program built with plugins/sdk)"
	}
	return msg
}

func (s *Server) listPlugins(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := authorizeSystem(r, p, auth.SystemPlugins, "list"); err != nil {
		return err
	}
	pls, err := s.st.ListPlugins(r.Context())
	if err != nil {
		return err
	}
	out := client.PluginList{Plugins: []client.Plugin{}}
	for _, pl := range pls {
		out.Plugins = append(out.Plugins, s.pluginJSON(pl))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getPlugin(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("name")
	info(r).target = "plugin/" + name
	if err := authorizeSystem(r, p, auth.SystemPlugins, "show"); err != nil {
		return err
	}
	pl, err := s.st.GetPlugin(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("plugin %q is not registered", name)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.pluginJSON(pl))
	return nil
}

// PluginRotator is how a rotation names plugin NAME.
func PluginRotator(name string) string { return "plugin:" + name }

// maxUsersNamed bounds the secrets a refusal names.
const maxUsersNamed = 10

func (s *Server) removePlugin(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("name")
	info(r).target = "plugin/" + name
	if err := authorizeSystem(r, p, auth.SystemPlugins, "remove"); err != nil {
		return err
	}
	var users, hookUsers []string
	err := s.st.InTx(r.Context(), func(tx store.Ops) error {
		users, hookUsers = nil, nil
		if _, err := tx.GetPlugin(r.Context(), name); err != nil {
			return err
		}
		after := ""
		for {
			rots, err := tx.ListRotations(r.Context(), store.ListRotationsParams{After: after, Limit: 500})
			if err != nil {
				return err
			}
			for _, rot := range rots {
				if rot.Rotator == PluginRotator(name) {
					users = append(users, rot.Secret)
				}
			}
			if len(rots) < 500 {
				break
			}
			after = rots[len(rots)-1].Secret
		}
		hooks, err := tx.ListHooks(r.Context())
		if err != nil {
			return err
		}
		for _, h := range hooks {
			if h.Kind == "plugin" && h.Target == name {
				hookUsers = append(hookUsers, h.Name)
			}
		}
		if len(users) > 0 || len(hookUsers) > 0 {
			return nil
		}
		return tx.DeletePlugin(r.Context(), name)
	})
	if errors.Is(err, store.ErrNotFound) {
		return notFound("plugin %q is not registered", name)
	}
	if err != nil {
		return err
	}
	if len(users) > 0 {
		named := users[:min(len(users), maxUsersNamed)]
		msg := fmt.Sprintf("plugin %s is used by the rotation of %d secret(s): %s", name, len(users), strings.Join(quoteAll(named), ", "))
		if len(users) > len(named) {
			msg += ", …"
		}
		return &httpError{http.StatusConflict, msg + "; set another rotator on them first (rotary rotation set NAME --rotator ...)"}
	}
	if len(hookUsers) > 0 {
		return &httpError{http.StatusConflict, fmt.Sprintf("plugin %s is used by the hook(s) %s; remove them first (rotary hook remove NAME)",
			name, strings.Join(quoteAll(hookUsers), ", "))}
	}
	if s.cfg.Plugins != nil {
		s.cfg.Plugins.Stop(name)
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": name})
	return nil
}

func quoteAll(l []string) []string {
	out := slices.Clone(l)
	for i, v := range out {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}
