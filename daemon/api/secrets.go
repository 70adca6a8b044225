package api

import (
	"cmp"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/store"
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
	s.eventRoutes()

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
	s.hookRoutes()
	s.pluginRoutes()
	s.backupRoutes()
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
	if err := secrets.ValidateName(req.Name); err != nil {
		info(r).action = "secret.create"
		return badRequest("field \"name\": %s", err)
	}
	if err := authorize(r, p, auth.KindSecret, req.Name, auth.ActionWrite); err != nil {
		return err
	}
	// A secret under a named master key is sealed with that key, so the
	// caller needs encrypt on it (AWS: kms:GenerateDataKey on the CMK);
	// the region's alias/default key is everyone's.
	if req.Key != "" {
		if err := s.authorizeSealKey(r, p, cmp.Or(req.Region, secrets.DefaultRegion), req.Key); err != nil {
			return err
		}
	}
	info(r).action, info(r).target = "secret.create", req.Name
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
	writeJSON(w, http.StatusCreated, redactSecret(p, s.withRotation(r, p, secretJSON(out))))
	return nil
}

// authorizeSealKey checks that p may encrypt with the master key ref of
// region, unless it is the region's default key. A denial is a 403 naming
// the key, audited as key.encrypt.
func (s *Server) authorizeSealKey(r *http.Request, p *principal, region, ref string) error {
	if ref == "alias/default" {
		return nil
	}
	if k, err := s.kms.DescribeKey(r.Context(), region, ref); err == nil && k.Alias == "default" {
		return nil
	}
	_, err := s.lookupKey(r, p, region, ref, auth.ActionEncrypt)
	return err
}

// pathSecret returns the {name} of the route, refusing an invalid name
// with a 400 before anything else looks at it. A secret stored before the
// segment rules of secrets.ValidateName keeps its name and stays reachable.
func (s *Server) pathSecret(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if err := secrets.ValidateName(name); err != nil {
		if secrets.ValidateLookupName(name) == nil {
			if _, gerr := s.st.GetSecret(r.Context(), name); gerr == nil {
				return name, nil
			}
		}
		info(r).target = truncate(name, 256)
		return "", badRequest("%s", err)
	}
	return name, nil
}

// Page sizes of list endpoints.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// pageParams reads ?limit= and ?after= of a list endpoint.
func pageParams(r *http.Request) (limit int, after string, err error) {
	q := r.URL.Query()
	limit = defaultPageSize
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			return 0, "", badRequest("limit: %q must be a whole number between 1 and %d", truncate(v, 32), maxPageSize)
		}
		limit = n
	}
	after = q.Get("after")
	if len(after) > 512 {
		return 0, "", badRequest("after: longer than 512 characters")
	}
	return limit, after, nil
}

// withRotation fills the rotation part of a description. Rotation arrives
// with the rotation engine; until a secret has settings it is null.
func (s *Server) withRotation(r *http.Request, p *principal, sec client.Secret) client.Secret {
	rot, err := s.st.GetRotation(r.Context(), sec.Name)
	if err != nil {
		return sec
	}
	ri := s.rotationInfo(p, rot)
	sec.Rotation = &ri
	return sec
}

// listRotations fills the rotation summary (rotator, schedule, window,
// state, last and next rotation, last error; not the config) of the
// listed secrets the caller may describe. The secrets are in name order,
// so their rotations are one range of the rotations table, read in
// pages of len(secs): one query for a page of a listing unless rotations
// of secrets left out of it (deleted, hidden) fill that range.
func (s *Server) listRotations(r *http.Request, p *principal, secs []client.Secret) error {
	if len(secs) == 0 {
		return nil
	}
	at := make(map[string]int, len(secs))
	for i, sec := range secs {
		if p.allowed(auth.KindSecret, sec.Name, auth.ActionDescribe) {
			at[sec.Name] = i
		}
	}
	if len(at) == 0 {
		return nil
	}
	first, last := secs[0].Name, secs[len(secs)-1].Name
	after := first[:len(first)-1] // the names after it start at first
	globs := secretGlobs(p, auth.ActionDescribe)
	states := s.scheduleStates()
	for {
		rots, err := s.st.ListRotations(r.Context(), store.ListRotationsParams{After: after, Limit: len(secs), Globs: globs})
		if err != nil {
			return err
		}
		for _, rot := range rots {
			if i, ok := at[rot.Secret]; ok {
				state, reason := states(rot)
				ri := s.rotationInfoIn(p, rot, state, reason)
				ri.Config, ri.BoundTo = nil, ""
				secs[i].Rotation = &ri
			}
		}
		if len(rots) < len(secs) || rots[len(rots)-1].Secret >= last {
			return nil
		}
		after = rots[len(rots)-1].Secret
	}
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request, p *principal) error {
	prefix := r.URL.Query().Get("prefix")
	ri := info(r)
	ri.action, ri.target = "secret.list", prefix+"*"
	if !auth.AllowedAny(p.policies, auth.KindSecret, auth.ActionList) {
		ri.result = "denied"
		return forbidden("list", "secrets")
	}
	limit, after, err := pageParams(r)
	if err != nil {
		return err
	}
	deleted, err := queryBool(r, "deleted")
	if err != nil {
		return err
	}
	// The store keeps only names the policies' list globs match, so a
	// listing never loads what the caller may not see; each row is still
	// checked with the authorizer.
	list, err := s.svc.List(r.Context(), secrets.ListParams{
		Prefix: prefix, IncludeDeleted: deleted, Limit: limit, After: after,
		Globs: secretGlobs(p, auth.ActionList),
	})
	if err != nil {
		return err
	}
	out := client.SecretList{Secrets: []client.Secret{}}
	for _, in := range list {
		if p.allowed(auth.KindSecret, in.Name, auth.ActionList) {
			out.Secrets = append(out.Secrets, secretJSON(in))
		}
	}
	if err := s.listRotations(r, p, out.Secrets); err != nil {
		return err
	}
	for i := range out.Secrets {
		out.Secrets[i] = redactSecret(p, out.Secrets[i])
	}
	if len(list) == limit {
		out.Next = list[len(list)-1].Name
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) describeSecret(w http.ResponseWriter, r *http.Request, p *principal) error {
	name, err := s.pathSecret(r)
	if err != nil {
		return err
	}
	if err := authorize(r, p, auth.KindSecret, name, auth.ActionDescribe); err != nil {
		return err
	}
	out, err := s.svc.Describe(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, redactSecret(p, s.withRotation(r, p, secretJSON(out))))
	return nil
}

func (s *Server) getSecretValue(w http.ResponseWriter, r *http.Request, p *principal) error {
	name, err := s.pathSecret(r)
	if err != nil {
		return err
	}
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
	name, err := s.pathSecret(r)
	if err != nil {
		return err
	}
	if err := authorize(r, p, auth.KindSecret, name, auth.ActionWrite); err != nil {
		return err
	}
	// A new version is sealed with the secret's master key: a named key
	// needs encrypt, as on create.
	if sec, err := s.svc.Describe(r.Context(), name); err == nil {
		if err := s.authorizeSealKey(r, p, sec.Region, sec.KeyID); err != nil {
			return err
		}
	}
	info(r).action, info(r).target = "secret.put", name
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
	put := s.svc.Put
	if s.engine != nil {
		put = s.engine.Put // ends a rotation the put overtakes
	}
	v, err := put(r.Context(), secrets.PutParams{Name: name, Value: value})
	if err != nil {
		return err
	}
	info(r).audited = true
	out := client.Version{
		Version: v.Version, Stages: v.Stages, Fingerprint: v.Fingerprint, CreatedAt: v.CreatedAt,
		CreatedBy: v.CreatedBy, Reason: v.Reason, KeyVersion: v.KeyVersion,
	}
	if !p.mayRead(name) {
		out.Fingerprint = ""
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request, p *principal) error {
	name, err := s.pathSecret(r)
	if err != nil {
		return err
	}
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
	writeJSON(w, http.StatusOK, redactSecret(p, secretJSON(out)))
	return nil
}

func (s *Server) restoreSecret(w http.ResponseWriter, r *http.Request, p *principal) error {
	name, err := s.pathSecret(r)
	if err != nil {
		return err
	}
	if err := authorize(r, p, auth.KindSecret, name, auth.ActionDelete); err != nil {
		return err
	}
	info(r).action = "secret.restore"
	out, err := s.svc.Restore(r.Context(), name)
	if err != nil {
		return err
	}
	info(r).audited = true
	writeJSON(w, http.StatusOK, redactSecret(p, s.withRotation(r, p, secretJSON(out))))
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
