package api

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/rotary-secrets/rotary/auth"
	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/kms"
	"github.com/rotary-secrets/rotary/secrets"
	"github.com/rotary-secrets/rotary/store"
)

func keyJSON(k kms.Key) client.Key {
	out := client.Key{
		ID: k.ID, Region: k.Region, Description: k.Description, State: string(k.State),
		PrimaryVersion: k.PrimaryVersion, NextRotationAt: k.NextRotationAt, DeletionDate: k.DeletionDate,
		CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt,
	}
	if k.Alias != "" {
		out.Alias = "alias/" + k.Alias
	}
	if k.RotationPeriod > 0 {
		out.RotationPeriod = k.RotationPeriod.String()
	}
	return out
}

func regionOf(r *http.Request) string {
	return cmp.Or(r.URL.Query().Get("region"), secrets.DefaultRegion)
}

// authorizeKey checks an action on a key, matching the policy glob against
// the key id and, if it has one, its alias.
func authorizeKey(r *http.Request, p *principal, k kms.Key, action auth.Action) error {
	ri := info(r)
	ri.action, ri.target = "key."+string(action), k.ID
	if p.allowed(auth.KindKey, k.ID, action) || (k.Alias != "" && p.allowed(auth.KindKey, "alias/"+k.Alias, action)) {
		return nil
	}
	ri.result = "denied"
	return forbidden(string(action), "key "+k.ID)
}

// lookupKey resolves a reference for authorization. An unknown key is
// reported as not found only to callers who could act on some key; others
// get permission denied, so key ids cannot be probed.
func (s *Server) lookupKey(r *http.Request, p *principal, region, ref string, action auth.Action) (kms.Key, error) {
	k, err := s.kms.DescribeKey(r.Context(), region, ref)
	if err != nil {
		ri := info(r)
		ri.action, ri.target = "key."+string(action), ref
		if !p.allowed(auth.KindKey, ref, action) {
			ri.result = "denied"
			return kms.Key{}, forbidden(string(action), "key "+ref)
		}
		return kms.Key{}, err
	}
	return k, authorizeKey(r, p, k, action)
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req client.CreateKeyRequest
	if err := decode(r, &req); err != nil {
		info(r).action = "key.create"
		return err
	}
	ri := info(r)
	ri.action, ri.target = "key.create", cmp.Or(req.Region, secrets.DefaultRegion)
	if !p.allowed(auth.KindSystem, auth.SystemKeys, auth.ActionAdmin) {
		ri.result = "denied"
		return forbidden("admin", "system keys")
	}
	var period time.Duration
	if req.RotationPeriod != "" {
		d, err := ParseDuration(req.RotationPeriod)
		if err != nil {
			return badRequest("rotation_period: %s", err)
		}
		period = d
	}
	k, err := s.kms.CreateKey(r.Context(), kms.CreateKeyParams{
		Region: cmp.Or(req.Region, secrets.DefaultRegion), Alias: req.Alias,
		Description: req.Description, RotationPeriod: period,
	})
	if err != nil {
		return err
	}
	ri.target = k.ID
	writeJSON(w, http.StatusCreated, keyJSON(k))
	return nil
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, p *principal) error {
	ri := info(r)
	ri.action, ri.target = "key.list", "*"
	if !auth.AllowedAny(p.policies, auth.KindKey, auth.ActionList) {
		ri.result = "denied"
		return forbidden("list", "keys")
	}
	limit, after, err := pageParams(r)
	if err != nil {
		return err
	}
	var from keyCursor
	if after != "" {
		if from, err = parseKeyCursor(after); err != nil {
			return err
		}
	}
	// Master keys are few (an admin makes each one), so the page is cut
	// from the sorted list in memory.
	keys, err := s.kms.ListKeys(r.Context(), r.URL.Query().Get("region"))
	if err != nil {
		return err
	}
	out := client.KeyList{Keys: []client.Key{}}
	var last kms.Key
	for _, k := range keys {
		if after != "" && cursorOf(k).compare(from) <= 0 {
			continue
		}
		if !p.allowed(auth.KindKey, k.ID, auth.ActionList) && (k.Alias == "" || !p.allowed(auth.KindKey, "alias/"+k.Alias, auth.ActionList)) {
			continue
		}
		if len(out.Keys) == limit {
			out.Next = cursorOf(last).String()
			break
		}
		out.Keys = append(out.Keys, keyJSON(k))
		last = k
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// keyCursor is a position in the key listing's order: region, alias, id
// (kms.Manager.ListKeys). On the wire it is base64url of the three joined
// by NUL.
type keyCursor struct{ region, alias, id string }

func cursorOf(k kms.Key) keyCursor { return keyCursor{k.Region, k.Alias, k.ID} }

func (c keyCursor) compare(o keyCursor) int {
	return cmp.Or(cmp.Compare(c.region, o.region), cmp.Compare(c.alias, o.alias), cmp.Compare(c.id, o.id))
}

func (c keyCursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(c.region + "\x00" + c.alias + "\x00" + c.id))
}

func parseKeyCursor(s string) (keyCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	parts := strings.Split(string(b), "\x00")
	if err != nil || len(parts) != 3 {
		return keyCursor{}, badRequest("after: not a cursor from a previous page's \"next\"")
	}
	return keyCursor{parts[0], parts[1], parts[2]}, nil
}

func (s *Server) describeKey(w http.ResponseWriter, r *http.Request, p *principal) error {
	k, err := s.lookupKey(r, p, regionOf(r), r.PathValue("ref"), auth.ActionDescribe)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, keyJSON(k))
	return nil
}

func (s *Server) keyAction(w http.ResponseWriter, r *http.Request, p *principal) error {
	region, ref, action := regionOf(r), r.PathValue("ref"), r.PathValue("action")
	switch action {
	case "rotate", "disable", "enable", "schedule-deletion", "cancel-deletion":
	default:
		return notFound("no such key action %q (use rotate, disable, enable, schedule-deletion or cancel-deletion)", action)
	}
	k, err := s.lookupKey(r, p, region, ref, auth.ActionAdmin)
	if err != nil {
		return err
	}
	info(r).action = "key." + action
	ctx := r.Context()
	switch action {
	case "rotate":
		k, err = s.kms.RotateKey(ctx, region, k.ID)
	case "disable":
		k, err = s.kms.DisableKey(ctx, region, k.ID)
	case "enable":
		k, err = s.kms.EnableKey(ctx, region, k.ID)
	case "cancel-deletion":
		k, err = s.kms.CancelKeyDeletion(ctx, region, k.ID)
	case "schedule-deletion":
		var req client.ScheduleDeletionRequest
		if r.ContentLength != 0 {
			if err := decode(r, &req); err != nil {
				return err
			}
		}
		window := 30 * 24 * time.Hour
		if req.PendingWindow != "" {
			if window, err = ParseDuration(req.PendingWindow); err != nil {
				return badRequest("pending_window: %s", err)
			}
		}
		k, err = s.kms.ScheduleKeyDeletion(ctx, region, k.ID, window)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, keyJSON(k))
	return nil
}

func (s *Server) rewrap(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req client.RewrapRequest
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			return err
		}
	}
	ri := info(r)
	ri.action, ri.target = "key.rewrap", cmp.Or(req.Region, "*")
	if !p.allowed(auth.KindSystem, auth.SystemKeys, auth.ActionAdmin) {
		ri.result = "denied"
		return forbidden("admin", "system keys")
	}
	// Record the request before streaming: the stream is the answer.
	if err := s.audit.Append(r.Context(), store.AuditRecord{
		Time: s.now().UTC(), TokenID: ri.tokenID, Action: ri.action, Target: ri.target,
		Result: "started", RequestID: ri.id,
	}); err != nil {
		return err
	}
	ri.audited = true
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	out := w.(*bufferedWriter).beginStream(http.StatusOK)
	enc := json.NewEncoder(out)
	flusher, _ := out.(http.Flusher)
	last := time.Time{}
	send := func(pr client.RewrapProgress) {
		_ = enc.Encode(pr)
		if flusher != nil {
			flusher.Flush()
		}
	}
	rep, err := s.svc.Rewrap(r.Context(), req.Region, func(done, total int) {
		if time.Since(last) > 100*time.Millisecond || done == total {
			last = time.Now()
			send(client.RewrapProgress{Total: total, Scanned: done})
		}
	})
	final := client.RewrapProgress{
		Done: true, Total: rep.Scanned, Scanned: rep.Scanned, Rewrapped: rep.Rewrapped, Skipped: rep.Skipped, Keys: rep.Keys,
	}
	if err != nil {
		s.log.Error("rewrap failed", "request_id", ri.id, "err", err)
		final.Error = "rewrap failed: " + err.Error()
	}
	send(final)
	return nil
}

func decodeB64(field, v string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, badRequest("%s: invalid base64", field)
	}
	return b, nil
}

func (s *Server) generateDataKey(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req client.DataKeyRequest
	if err := decode(r, &req); err != nil {
		info(r).action = "key.encrypt"
		return err
	}
	region := cmp.Or(req.Region, secrets.DefaultRegion)
	if req.Key == "" {
		return badRequest("field \"key\" is required")
	}
	k, err := s.lookupKey(r, p, region, req.Key, auth.ActionEncrypt)
	if err != nil {
		return err
	}
	info(r).action = "kms.generate-data-key"
	dk, err := s.kms.GenerateDataKey(r.Context(), kms.GenerateDataKeyParams{Region: region, KeyRef: k.ID, Context: req.Context})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, client.DataKey{
		KeyID: k.ID, Plaintext: base64.StdEncoding.EncodeToString(dk.Plaintext.Reveal()), Ciphertext: base64.StdEncoding.EncodeToString(dk.Ciphertext),
	})
	return nil
}

func (s *Server) encrypt(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req client.EncryptRequest
	if err := decode(r, &req); err != nil {
		info(r).action = "key.encrypt"
		return err
	}
	region := cmp.Or(req.Region, secrets.DefaultRegion)
	if req.Key == "" {
		return badRequest("field \"key\" is required")
	}
	pt, err := decodeB64("plaintext", req.Plaintext)
	if err != nil {
		return err
	}
	if len(pt) > 64<<10 {
		return badRequest("plaintext: %d bytes is more than the limit of 65536", len(pt))
	}
	k, err := s.lookupKey(r, p, region, req.Key, auth.ActionEncrypt)
	if err != nil {
		return err
	}
	info(r).action = "kms.encrypt"
	res, err := s.kms.Encrypt(r.Context(), kms.EncryptParams{Region: region, KeyRef: k.ID, Plaintext: pt, Context: req.Context})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, client.EncryptResponse{KeyID: k.ID, Ciphertext: base64.StdEncoding.EncodeToString(res.Ciphertext)})
	return nil
}

func (s *Server) decrypt(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req client.DecryptRequest
	if err := decode(r, &req); err != nil {
		info(r).action = "key.decrypt"
		return err
	}
	region := cmp.Or(req.Region, secrets.DefaultRegion)
	ct, err := decodeB64("ciphertext", req.Ciphertext)
	if err != nil {
		return err
	}
	hdr, err := kms.ParseEnvelope(ct)
	if err != nil || hdr.Kind != kms.KindData {
		info(r).action = "key.decrypt"
		return badRequest("ciphertext: not a rotary KMS ciphertext")
	}
	k, err := s.lookupKey(r, p, region, hdr.KeyID, auth.ActionDecrypt)
	if err != nil {
		return err
	}
	info(r).action = "kms.decrypt"
	res, err := s.kms.Decrypt(r.Context(), kms.DecryptParams{Region: region, Ciphertext: ct, Context: req.Context})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, client.DecryptResponse{KeyID: k.ID, Plaintext: base64.StdEncoding.EncodeToString(res.Plaintext.Reveal())})
	return nil
}
