package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/secrets"
)

func (s *Server) routes() {
	s.handlePublic("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.handlePublic("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Ready != nil {
			if err := s.cfg.Ready(r.Context()); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, client.ErrorBody{Error: "not ready: " + err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	s.mux.Handle("GET /metrics", s.metrics.handler())

	s.handle("POST /v1/secrets", s.createSecret)
	s.handle("GET /v1/secrets", s.listSecrets)
	s.handle("GET /v1/secrets/{name}", s.describeSecret)
	s.handle("GET /v1/secrets/{name}/value", s.getSecretValue)
	s.handle("POST /v1/secrets/{name}/versions", s.putSecret)
	s.handle("DELETE /v1/secrets/{name}", s.deleteSecret)
	s.handle("POST /v1/secrets/{name}/restore", s.restoreSecret)

	s.handle("POST /v1/keys", s.createKey)
	s.handle("GET /v1/keys", s.listKeys)
	s.handle("POST /v1/keys/rewrap", s.rewrap)
	s.handle("GET /v1/keys/{ref}", s.describeKey)
	s.handle("POST /v1/keys/{ref}/{action}", s.keyAction)
	s.handle("POST /v1/kms/generate-data-key", s.generateDataKey)
	s.handle("POST /v1/kms/encrypt", s.encrypt)
	s.handle("POST /v1/kms/decrypt", s.decrypt)

	s.handle("PUT /v1/policies/{name}", s.putPolicy)
	s.handle("GET /v1/policies", s.listPolicies)
	s.handle("GET /v1/policies/{name}", s.getPolicy)
	s.handle("DELETE /v1/policies/{name}", s.deletePolicy)
	s.handle("POST /v1/tokens", s.createToken)
	s.handle("GET /v1/tokens", s.listTokens)
	s.handle("DELETE /v1/tokens/{id}", s.revokeToken)
	s.handle("GET /v1/audit", s.listAudit)
	s.rotationRoutes()
	s.handle("POST /v1/audit/verify", s.verifyAudit)
	s.handle("GET /v1/audit/checkpoint", s.auditCheckpoint)

	s.mux.Handle("/", s.unmatched())
}

// authorize records the action and target for the audit record and checks
// the principal's policies.
func authorize(r *http.Request, p *principal, kind auth.Kind, name string, action auth.Action) error {
	ri := info(r)
	ri.action = string(kind) + "." + string(action)
	ri.target = name
	if !p.allowed(kind, name, action) {
		ri.result = "denied"
		return forbidden(string(action), string(kind)+" "+strconv.Quote(name))
	}
	return nil
}

func secretJSON(in secrets.Info) client.Secret {
	out := client.Secret{
		Name: in.Name, Type: in.Type, Region: in.Region, KeyID: in.KeyID, Description: in.Description,
		Tags: in.Tags, Metadata: in.Metadata, CreatedAt: in.CreatedAt, UpdatedAt: in.UpdatedAt,
		DeletedAt: in.DeletedAt, PurgeAt: in.PurgeAt, Versions: []client.Version{},
	}
	for _, v := range in.Versions {
		st := v.Stages
		if st == nil {
			st = []string{}
		}
		out.Versions = append(out.Versions, client.Version{
			Version: v.Version, Stages: st, Fingerprint: v.Fingerprint, CreatedAt: v.CreatedAt,
			CreatedBy: v.CreatedBy, Reason: v.Reason, KeyVersion: v.KeyVersion,
		})
	}
	return out
}

func (s *Server) createSecret(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req client.CreateSecretRequest
	if err := decode(r, &req); err != nil {
		info(r).action = "secret.write"
		return err
	}
	if err := authorize(r, p, auth.KindSecret, req.Name, auth.ActionWrite); err != nil {
		return err
	}
	info(r).action = "secret.create"
	var value []byte
	if req.Value != nil {
		v, err := req.Value.Bytes()
		if err != nil {
			return badRequest("%s", err)
		}
		value = v
	}
	out, err := s.svc.Create(r.Context(), secrets.CreateParams{
		Name: req.Name, Type: req.Type, Region: req.Region, KeyRef: req.Key,
		Description: req.Description, Tags: req.Tags, Value: value,
	})
	if err != nil {
		return err
	}
	info(r).audited = true
	writeJSON(w, http.StatusCreated, s.withRotation(r, secretJSON(out)))
	return nil
}

// withRotation fills the rotation part of a description. Rotation arrives
// with the rotation engine; until a secret has settings it is null.
func (s *Server) withRotation(r *http.Request, sec client.Secret) client.Secret {
	rot, err := s.st.GetRotation(r.Context(), sec.Name)
	if err != nil {
		return sec
	}
	ri := s.rotationInfo(rot)
	sec.Rotation = &ri
	return sec
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request, p *principal) error {
	prefix := r.URL.Query().Get("prefix")
	ri := info(r)
	ri.action, ri.target = "secret.list", prefix+"*"
	if !auth.AllowedAny(p.policies, auth.KindSecret, auth.ActionList) {
		ri.result = "denied"
		return forbidden("list", "secrets")
	}
	list, err := s.svc.List(r.Context(), secrets.ListParams{Prefix: prefix, IncludeDeleted: r.URL.Query().Get("deleted") == "true"})
	if err != nil {
		return err
	}
	out := client.SecretList{Secrets: []client.Secret{}}
	for _, in := range list {
		if p.allowed(auth.KindSecret, in.Name, auth.ActionList) {
			out.Secrets = append(out.Secrets, secretJSON(in))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) describeSecret(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("name")
	if err := authorize(r, p, auth.KindSecret, name, auth.ActionDescribe); err != nil {
		return err
	}
	out, err := s.svc.Describe(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.withRotation(r, secretJSON(out)))
	return nil
}

func (s *Server) getSecretValue(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("name")
	if err := authorize(r, p, auth.KindSecret, name, auth.ActionRead); err != nil {
		return err
	}
	q := r.URL.Query()
	var version int64
	if v := q.Get("version"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return badRequest("version %q: must be a positive whole number", v)
		}
		version = n
	}
	val, err := s.svc.Get(r.Context(), secrets.GetParams{Name: name, Version: version, Stage: q.Get("stage")})
	if err != nil {
		return err
	}
	info(r).detail = "version=" + strconv.FormatInt(val.Version, 10)
	enc := client.NewValue(val.Value.Reveal())
	stages := val.Stages
	if stages == nil {
		stages = []string{}
	}
	writeJSON(w, http.StatusOK, client.SecretValue{
		Name: val.Name, Version: val.Version, Stages: stages, Value: enc.Data, Encoding: enc.Encoding,
	})
	return nil
}

func (s *Server) putSecret(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("name")
	if err := authorize(r, p, auth.KindSecret, name, auth.ActionWrite); err != nil {
		return err
	}
	info(r).action = "secret.put"
	var req client.PutSecretRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Value == nil {
		return badRequest("field \"value\" is required")
	}
	value, err := req.Value.Bytes()
	if err != nil {
		return badRequest("%s", err)
	}
	v, err := s.svc.Put(r.Context(), secrets.PutParams{Name: name, Value: value})
	if err != nil {
		return err
	}
	info(r).audited = true
	writeJSON(w, http.StatusCreated, client.Version{
		Version: v.Version, Stages: v.Stages, Fingerprint: v.Fingerprint, CreatedAt: v.CreatedAt,
		CreatedBy: v.CreatedBy, Reason: v.Reason, KeyVersion: v.KeyVersion,
	})
	return nil
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("name")
	if err := authorize(r, p, auth.KindSecret, name, auth.ActionDelete); err != nil {
		return err
	}
	q := r.URL.Query()
	var window time.Duration
	if v := q.Get("recovery_window"); v != "" {
		d, err := ParseDuration(v)
		if err != nil {
			return badRequest("recovery_window: %s", err)
		}
		window = d
	}
	force := false
	if v := q.Get("force"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return badRequest("force: %q is not true or false", v)
		}
		force = b
	}
	out, err := s.svc.Delete(r.Context(), secrets.DeleteParams{Name: name, RecoveryWindow: window, Force: force})
	if err != nil {
		return err
	}
	info(r).audited = true
	writeJSON(w, http.StatusOK, secretJSON(out))
	return nil
}

func (s *Server) restoreSecret(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("name")
	if err := authorize(r, p, auth.KindSecret, name, auth.ActionDelete); err != nil {
		return err
	}
	info(r).action = "secret.restore"
	out, err := s.svc.Restore(r.Context(), name)
	if err != nil {
		return err
	}
	info(r).audited = true
	writeJSON(w, http.StatusOK, s.withRotation(r, secretJSON(out)))
	return nil
}

// ParseDuration parses Go durations plus days ("7d", "1d12h").
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || n < 0 || n > 36500 {
			return 0, errBadDuration(orig)
		}
		days = time.Duration(n) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errBadDuration(orig)
	}
	return days + d, nil
}

func errBadDuration(s string) error {
	return badRequest("invalid duration %q (use e.g. 90s, 15m, 12h, 7d)", s)
}
