package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/store"
)

// authorizeSystem checks admin on a system resource (policies, tokens, audit).
func authorizeSystem(r *http.Request, p *principal, resource, verb string) error {
	ri := info(r)
	ri.action = resource + "." + verb
	if ri.target == "" {
		ri.target = resource
	}
	if !p.allowed(auth.KindSystem, resource, auth.ActionAdmin) {
		ri.result = "denied"
		return forbidden("admin", resource)
	}
	return nil
}

func policyJSON(p store.Policy) (client.Policy, error) {
	out := client.Policy{Name: p.Name, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
	if err := json.Unmarshal(p.Document, &out.Document); err != nil {
		return out, fmt.Errorf("stored policy %q: %w", p.Name, err)
	}
	return out, nil
}

func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("name")
	info(r).target = "policy/" + name
	if err := authorizeSystem(r, p, "policies", "put"); err != nil {
		return err
	}
	if err := auth.ValidatePolicyName(name); err != nil {
		return badRequest("%s", err)
	}
	if name == RootPolicyName {
		return badRequest("policy %q is built in and cannot be changed", name)
	}
	var raw json.RawMessage
	if err := decode(r, &raw); err != nil {
		return err
	}
	doc, err := auth.ParsePolicy(raw)
	if err != nil {
		return badRequest("policy %q: %s", name, err)
	}
	if err := p.mayGrant(name, doc); err != nil {
		return err
	}
	now := s.now().UTC()
	pol := store.Policy{Name: name, Document: raw, CreatedAt: now, UpdatedAt: now}
	old, err := s.st.GetPolicy(r.Context(), name)
	switch {
	case err == nil:
		if err := p.mayChange(old); err != nil {
			return err
		}
		pol.CreatedAt = old.CreatedAt
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	if err := s.st.PutPolicy(r.Context(), pol); err != nil {
		return err
	}
	s.authn.flush()
	out, err := policyJSON(pol)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := authorizeSystem(r, p, "policies", "list"); err != nil {
		return err
	}
	limit, after, err := pageParams(r)
	if err != nil {
		return err
	}
	pols, err := s.st.ListPolicies(r.Context(), store.Page{After: after, Limit: limit})
	if err != nil {
		return err
	}
	out := client.PolicyList{Policies: []client.Policy{}}
	if len(pols) == limit {
		out.Next = pols[len(pols)-1].Name
	}
	for _, pol := range pols {
		cp, err := policyJSON(pol)
		if err != nil {
			return err
		}
		out.Policies = append(out.Policies, cp)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("name")
	info(r).target = "policy/" + name
	if err := authorizeSystem(r, p, "policies", "show"); err != nil {
		return err
	}
	pol, err := s.st.GetPolicy(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("policy %q not found", name)
	}
	if err != nil {
		return err
	}
	out, err := policyJSON(pol)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("name")
	info(r).target = "policy/" + name
	if err := authorizeSystem(r, p, "policies", "delete"); err != nil {
		return err
	}
	old, err := s.st.GetPolicy(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("policy %q not found", name)
	}
	if err != nil {
		return err
	}
	if err := p.mayChange(old); err != nil {
		return err
	}
	if err := s.st.DeletePolicy(r.Context(), name); err != nil {
		return err
	}
	s.authn.flush()
	writeJSON(w, http.StatusOK, map[string]string{"deleted": name})
	return nil
}

func tokenJSON(t store.Token) client.Token {
	pols := t.Policies
	if pols == nil {
		pols = []string{}
	}
	return client.Token{ID: t.ID, Name: t.Name, Policies: pols, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, RevokedAt: t.RevokedAt}
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := authorizeSystem(r, p, "tokens", "create"); err != nil {
		return err
	}
	var req client.CreateTokenRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if len(req.Policies) == 0 {
		return badRequest("a token needs at least one policy (field \"policies\")")
	}
	names := slices.Compact(slices.Sorted(slices.Values(req.Policies)))
	for i, name := range names {
		if looksLikeToken(name) {
			return badRequest("policies[%d]: this is a token, not a policy name", i)
		}
		if err := auth.ValidatePolicyName(name); err != nil {
			return badRequest("policies: %s", err)
		}
	}
	// Hand on only what the caller holds: checked before anything else
	// about the policies, so that a refused caller learns nothing more.
	if err := p.mayGive(names); err != nil {
		return err
	}
	for _, name := range names {
		if name == RootPolicyName {
			continue
		}
		if _, err := s.st.GetPolicy(r.Context(), name); errors.Is(err, store.ErrNotFound) {
			return badRequest("policy %q does not exist", name)
		} else if err != nil {
			return err
		}
	}
	if len(req.Name) > 128 {
		return badRequest("name: longer than 128 characters")
	}
	now := s.now().UTC()
	tok := store.Token{Name: req.Name, Policies: names, CreatedAt: now}
	if req.TTL != "" {
		d, err := ParseDuration(req.TTL)
		if err != nil {
			return badRequest("ttl: %s", err)
		}
		if d <= 0 {
			return badRequest("ttl: must be positive")
		}
		exp := now.Add(d)
		tok.ExpiresAt = &exp
	}
	exp, err := p.capExpiry(req.TTL, tok.ExpiresAt, now)
	if err != nil {
		return err
	}
	tok.ExpiresAt = exp
	plain, id, hash, err := auth.NewToken()
	if err != nil {
		return err
	}
	tok.ID, tok.Hash = id, hash
	if err := s.st.CreateToken(r.Context(), tok); err != nil {
		return err
	}
	info(r).target = id
	out := tokenJSON(tok)
	out.Token = plain
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := authorizeSystem(r, p, "tokens", "list"); err != nil {
		return err
	}
	limit, after, err := pageParams(r)
	if err != nil {
		return err
	}
	toks, err := s.st.ListTokens(r.Context(), store.Page{After: after, Limit: limit})
	if err != nil {
		return err
	}
	out := client.TokenList{Tokens: []client.Token{}}
	if len(toks) == limit {
		out.Next = toks[len(toks)-1].ID
	}
	for _, t := range toks {
		out.Tokens = append(out.Tokens, tokenJSON(t))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	id := r.PathValue("id")
	// Until it is known to be an id, the path may hold anything, a token
	// included: it goes into no audit record, log line or message.
	if err := authorizeSystem(r, p, "tokens", "revoke"); err != nil {
		return err
	}
	if err := auth.ValidateTokenID(id); err != nil {
		return badRequest("%s", err)
	}
	info(r).target = id
	tok, err := s.st.GetToken(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("token %q not found", id)
	}
	if err != nil {
		return err
	}
	if err := p.mayRevoke(tok); err != nil {
		return err
	}
	if tok.RevokedAt == nil {
		now := s.now().UTC()
		if err := s.st.RevokeToken(r.Context(), id, now); err != nil {
			return err
		}
		tok.RevokedAt = &now
	}
	s.authn.flush()
	writeJSON(w, http.StatusOK, tokenJSON(tok))
	return nil
}
