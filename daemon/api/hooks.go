package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/hooks"
	"github.com/rotary-secrets/rotary/store"
)

// hookRoutes registers the function hook routes: admin on the system
// resource "hooks".
func (s *Server) hookRoutes() {
	s.handle("POST /v1/hooks", s.addHook)
	s.handle("GET /v1/hooks", s.listHooks)
	s.handle("DELETE /v1/hooks/{name}", s.removeHook)
}

func (s *Server) hookManager() (*hooks.Manager, error) {
	if s.cfg.Hooks == nil {
		return nil, &httpError{http.StatusServiceUnavailable, "function hooks are not enabled in this daemon"}
	}
	return s.cfg.Hooks, nil
}

func hookJSON(h store.Hook) client.Hook {
	state := "ok"
	if h.Failing {
		state = "failing"
	}
	timeout := h.Timeout
	if timeout == 0 {
		timeout = hooks.DefaultTimeout
	}
	return client.Hook{
		Name: h.Name, On: h.On, Secrets: h.Secrets, Kind: h.Kind, Target: h.Target, Shell: h.Shell,
		Timeout: timeout.String(), State: state, LastDeliveryAt: h.LastDeliveryAt, Delivered: h.Delivered,
		Failures: h.Failures, Dropped: h.Dropped, Backlog: h.Backlog, LastError: h.LastError, CreatedAt: h.CreatedAt,
	}
}

func (s *Server) addHook(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := authorizeSystem(r, p, auth.SystemHooks, "add"); err != nil {
		return err
	}
	m, err := s.hookManager()
	if err != nil {
		return err
	}
	var req client.AddHookRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	info(r).target = "hook/" + truncate(req.Name, 80)
	params := hooks.AddParams{
		Name: req.Name, On: req.On, Secrets: req.Secrets, Kind: req.Kind, Target: req.Target,
		Shell: req.Shell, Secret: req.Secret,
	}
	if req.Timeout != "" {
		d, err := ParseDuration(req.Timeout)
		if err != nil {
			return badRequest("timeout %q: %s", req.Timeout, err)
		}
		params.Timeout = d
	}
	info(r).detail = fmt.Sprintf("kind=%s on=%s", truncate(req.Kind, 20), truncate(req.On, 20))
	if req.Kind == "plugin" {
		pl, err := s.st.GetPlugin(r.Context(), req.Target)
		if errors.Is(err, store.ErrNotFound) {
			return badRequest("plugin %q is not registered; rotary plugin register %s --path ... first", truncate(req.Target, 80), truncate(req.Target, 80))
		} else if err != nil {
			return err
		}
		if len(pl.Kinds) > 0 && !slices.Contains(pl.Kinds, "hook") {
			return badRequest("plugin %q serves %s, not a hook", req.Target, strings.Join(pl.Kinds, ", "))
		}
	}
	generated, err := m.Add(r.Context(), params)
	switch {
	case errors.Is(err, hooks.ErrInvalid):
		return badRequest("%s", err)
	case err != nil:
		return err
	}
	h, err := s.st.GetHook(r.Context(), req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, client.AddHookResponse{Hook: hookJSON(h), Secret: generated})
	return nil
}

func (s *Server) listHooks(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := authorizeSystem(r, p, auth.SystemHooks, "list"); err != nil {
		return err
	}
	m, err := s.hookManager()
	if err != nil {
		return err
	}
	hs, err := m.List(r.Context())
	if err != nil {
		return err
	}
	out := client.HookList{Hooks: make([]client.Hook, 0, len(hs))}
	for _, h := range hs {
		out.Hooks = append(out.Hooks, hookJSON(h))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) removeHook(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("name")
	info(r).target = "hook/" + truncate(name, 80)
	if err := authorizeSystem(r, p, auth.SystemHooks, "remove"); err != nil {
		return err
	}
	m, err := s.hookManager()
	if err != nil {
		return err
	}
	if err := m.Remove(r.Context(), name); errors.Is(err, store.ErrNotFound) {
		return notFound("hook %q not found", name)
	} else if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": name})
	return nil
}
