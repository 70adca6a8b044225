// Package client is the Go client of rotary's HTTP API. The rotary CLI is
// built on it; applications use it to read secrets.
package client

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultListen is the host:port the daemon listens on unless told
// otherwise, and DefaultAddr the address clients use unless told
// otherwise: the one definition of both.
const (
	DefaultListen = "127.0.0.1:8420"
	DefaultAddr   = "http://" + DefaultListen
)

// ErrUnreachable wraps every failure to reach the server at all.
var ErrUnreachable = errors.New("server unreachable")

// ErrConnectionLost is wrapped (with ErrUnreachable) when the server
// closed the connection before it answered: the daemon stopped or
// restarted while the request was in flight.
var ErrConnectionLost = errors.New("the server closed the connection before answering")

// APIError is an error answer from the server.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

// StatusOf returns the HTTP status of an API error, or 0.
func StatusOf(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// Client talks to one rotary daemon.
type Client struct {
	addr  string
	token string
	hc    *http.Client

	// The value cache behind Get, Field and Watch (cache.go), made on
	// first use.
	cacheOpts cacheOptions
	cacheOnce sync.Once
	cache     *cache
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (for TLS settings, timeouts). If it
// has no CheckRedirect, the Client uses a copy that refuses redirects.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithToken sets the API token the client sends.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithTLSConfig sets the TLS settings of the client's connections (a
// private CA in RootCAs, a client certificate). It replaces the transport
// of the HTTP client, so give it after WithHTTPClient when both are used.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *Client) {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = cfg
		hc := *c.hc
		hc.Transport = tr
		c.hc = &hc
	}
}

// New returns a client for addr (default DefaultAddr); WithToken gives
// it the token to send.
func New(addr string, opts ...Option) (*Client, error) {
	addr = strings.TrimRight(cmp.Or(addr, DefaultAddr), "/")
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid address %q: want http://HOST:PORT or https://HOST:PORT", addr)
	}
	c := &Client{addr: addr, hc: &http.Client{Timeout: 5 * time.Minute, CheckRedirect: noRedirect}}
	for _, o := range opts {
		o(c)
	}
	if c.hc.CheckRedirect == nil {
		// A caller's client without a redirect policy gets ours, on a
		// copy so that the caller's client is left as it was.
		hc := *c.hc
		hc.CheckRedirect = noRedirect
		c.hc = &hc
	}
	return c, nil
}

// Addr returns the server address.
func (c *Client) Addr() string { return c.addr }

// PathEscape escapes a secret name or key reference for one URL path
// segment: "/" becomes "%2F", "?" "%3F", and every "." "%2E", so that no
// name ("..", "a/../../v1/tokens", "x?y") can be read as a dot segment,
// a query or another route by the server, a proxy or the HTTP library.
// The server decodes the segment back to the name.
func PathEscape(s string) string { return strings.ReplaceAll(url.PathEscape(s), ".", "%2E") }

// ErrRedirect is returned when the server answers with a redirect: the API
// never redirects, so a redirect means the request was not understood as
// sent, and it is not followed.
var ErrRedirect = errors.New("the server answered with a redirect, which the rotary API never sends")

func noRedirect(req *http.Request, _ []*http.Request) error {
	return fmt.Errorf("%w (to %s)", ErrRedirect, req.URL.Path)
}

func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := c.addr + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

func (c *Client) send(req *http.Request) (*http.Response, error) {
	return c.sendWith(c.hc, req)
}

// sendWith is send through hc (a copy of the client's with other
// timeouts).
func (c *Client) sendWith(hc *http.Client, req *http.Request) (*http.Response, error) {
	resp, err := hc.Do(req)
	if errors.Is(err, ErrRedirect) {
		return nil, &APIError{Status: http.StatusBadRequest, Message: rootCause(err).Error()}
	}
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		if connectionLost(err) {
			return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, c.addr, ErrConnectionLost)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, c.addr, rootCause(err))
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var eb ErrorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			eb.Error = fmt.Sprintf("server answered %s", resp.Status)
		}
		return nil, &APIError{Status: resp.StatusCode, Message: eb.Error}
	}
	return resp, nil
}

// connectionLost reports whether err says the server hung up on a
// request it had accepted (EOF, a reset connection) rather than refusing
// the connection or not answering at all.
func connectionLost(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// Do sends one request and decodes the JSON answer into out (if non-nil).
func (c *Client) Do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	req, err := c.newRequest(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if connectionLost(err) && ctx.Err() == nil {
			return fmt.Errorf("%w: %s: %w", ErrUnreachable, c.addr, ErrConnectionLost)
		}
		return fmt.Errorf("decode answer to %s %s: %w", method, path, err)
	}
	return nil
}

func secretPath(name string, rest ...string) string {
	p := "/v1/secrets/" + PathEscape(name)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// CreateSecret creates a secret.
func (c *Client) CreateSecret(ctx context.Context, r CreateSecretRequest) (Secret, error) {
	var out Secret
	return out, c.Do(ctx, http.MethodPost, "/v1/secrets", nil, r, &out)
}

// PutSecret adds a version that becomes current.
func (c *Client) PutSecret(ctx context.Context, name string, value []byte) (Version, error) {
	var out Version
	return out, c.Do(ctx, http.MethodPost, secretPath(name, "versions"), nil, PutSecretRequest{Value: NewValue(value)}, &out)
}

// GetSecret reads a value: version > 0 selects a version, stage a stage,
// neither the current version.
func (c *Client) GetSecret(ctx context.Context, name string, version int64, stage string) (SecretValue, error) {
	q := url.Values{}
	if version > 0 {
		q.Set("version", strconv.FormatInt(version, 10))
	}
	if stage != "" {
		q.Set("stage", stage)
	}
	var out SecretValue
	return out, c.Do(ctx, http.MethodGet, secretPath(name, "value"), q, nil, &out)
}

// DescribeSecret returns a secret's metadata.
func (c *Client) DescribeSecret(ctx context.Context, name string) (Secret, error) {
	var out Secret
	return out, c.Do(ctx, http.MethodGet, secretPath(name), nil, nil, &out)
}

// ListSecretsOptions selects one page of GET /v1/secrets.
type ListSecretsOptions struct {
	Prefix  string
	Deleted bool   // include secrets scheduled for deletion
	After   string // the Next of the previous page
	Limit   int    // page size; 0 is the server's default
}

// ListSecretsPage returns one page of secrets; its Next, when set, is the
// After of the next page.
func (c *Client) ListSecretsPage(ctx context.Context, o ListSecretsOptions) (SecretList, error) {
	q := url.Values{}
	if o.Prefix != "" {
		q.Set("prefix", o.Prefix)
	}
	if o.Deleted {
		q.Set("deleted", "true")
	}
	if o.After != "" {
		q.Set("after", o.After)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	var out SecretList
	return out, c.Do(ctx, http.MethodGet, "/v1/secrets", q, nil, &out)
}

// ListAllSecrets follows the pages of a listing to the end.
func (c *Client) ListAllSecrets(ctx context.Context, o ListSecretsOptions) ([]Secret, error) {
	var all []Secret
	for {
		page, err := c.ListSecretsPage(ctx, o)
		if err != nil {
			return all, err
		}
		all = append(all, page.Secrets...)
		if page.Next == "" {
			return all, nil
		}
		if page.Next <= o.After {
			return all, fmt.Errorf("list secrets: the server's next cursor %q does not advance", page.Next)
		}
		o.After = page.Next
	}
}

// ListSecrets lists every secret whose name starts with prefix, following
// the pages.
func (c *Client) ListSecrets(ctx context.Context, prefix string) ([]Secret, error) {
	return c.ListAllSecrets(ctx, ListSecretsOptions{Prefix: prefix})
}

// DeleteSecret schedules deletion after window ("" for the default), or
// deletes now with force.
func (c *Client) DeleteSecret(ctx context.Context, name, window string, force bool) (Secret, error) {
	q := url.Values{}
	if window != "" {
		q.Set("recovery_window", window)
	}
	if force {
		q.Set("force", "true")
	}
	var out Secret
	return out, c.Do(ctx, http.MethodDelete, secretPath(name), q, nil, &out)
}

// RestoreSecret cancels a scheduled deletion.
func (c *Client) RestoreSecret(ctx context.Context, name string) (Secret, error) {
	var out Secret
	return out, c.Do(ctx, http.MethodPost, secretPath(name, "restore"), nil, nil, &out)
}

func keyPath(ref string, rest ...string) string {
	p := "/v1/keys/" + PathEscape(ref)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

func regionQuery(region string) url.Values {
	q := url.Values{}
	if region != "" {
		q.Set("region", region)
	}
	return q
}

// CreateKey creates a master key.
func (c *Client) CreateKey(ctx context.Context, r CreateKeyRequest) (Key, error) {
	var out Key
	return out, c.Do(ctx, http.MethodPost, "/v1/keys", nil, r, &out)
}

// ListKeysPage returns one page of master keys ("" region: all) after
// the cursor after ("" for the first page), at most limit (0: the
// server's default).
func (c *Client) ListKeysPage(ctx context.Context, region, after string, limit int) (KeyList, error) {
	q := regionQuery(region)
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out KeyList
	return out, c.Do(ctx, http.MethodGet, "/v1/keys", q, nil, &out)
}

// ListKeys lists master keys ("" region: all), following the pages.
func (c *Client) ListKeys(ctx context.Context, region string) ([]Key, error) {
	var all []Key
	after := ""
	for {
		page, err := c.ListKeysPage(ctx, region, after, 0)
		if err != nil {
			return all, err
		}
		all = append(all, page.Keys...)
		if page.Next == "" || page.Next == after {
			return all, nil
		}
		after = page.Next
	}
}

// DescribeKey describes a key by id or alias/NAME.
func (c *Client) DescribeKey(ctx context.Context, region, ref string) (Key, error) {
	var out Key
	return out, c.Do(ctx, http.MethodGet, keyPath(ref), regionQuery(region), nil, &out)
}

// KeyAction runs rotate, disable, enable or cancel-deletion on a key.
func (c *Client) KeyAction(ctx context.Context, region, ref, action string) (Key, error) {
	var out Key
	return out, c.Do(ctx, http.MethodPost, keyPath(ref, action), regionQuery(region), nil, &out)
}

// ScheduleKeyDeletion schedules a key's deletion after window ("" = 30d).
func (c *Client) ScheduleKeyDeletion(ctx context.Context, region, ref, window string) (Key, error) {
	var out Key
	return out, c.Do(ctx, http.MethodPost, keyPath(ref, "schedule-deletion"), regionQuery(region),
		ScheduleDeletionRequest{PendingWindow: window}, &out)
}

// Rewrap re-wraps data keys under the newest key versions; progress is
// called for every progress line the server streams. It returns the final
// counts.
func (c *Client) Rewrap(ctx context.Context, region string, progress func(RewrapProgress)) (RewrapProgress, error) {
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/keys/rewrap", nil, RewrapRequest{Region: region})
	if err != nil {
		return RewrapProgress{}, err
	}
	resp, err := c.send(req)
	if err != nil {
		return RewrapProgress{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var last RewrapProgress
	for sc.Scan() {
		var p RewrapProgress
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			return last, fmt.Errorf("rewrap: bad progress line: %w", err)
		}
		last = p
		if progress != nil {
			progress(p)
		}
		if p.Done {
			if p.Error != "" {
				return p, errors.New(p.Error)
			}
			return p, nil
		}
	}
	if err := sc.Err(); err != nil {
		return last, fmt.Errorf("%w: rewrap stream: %v", ErrUnreachable, err)
	}
	return last, errors.New("rewrap: the server ended the stream before finishing")
}

// GenerateDataKey asks for a fresh data key under a master key.
func (c *Client) GenerateDataKey(ctx context.Context, r DataKeyRequest) (DataKey, error) {
	var out DataKey
	return out, c.Do(ctx, http.MethodPost, "/v1/kms/generate-data-key", nil, r, &out)
}

// Encrypt encrypts with a master key.
func (c *Client) Encrypt(ctx context.Context, r EncryptRequest) (EncryptResponse, error) {
	var out EncryptResponse
	return out, c.Do(ctx, http.MethodPost, "/v1/kms/encrypt", nil, r, &out)
}

// Decrypt decrypts a ciphertext made by Encrypt or GenerateDataKey.
func (c *Client) Decrypt(ctx context.Context, r DecryptRequest) (DecryptResponse, error) {
	var out DecryptResponse
	return out, c.Do(ctx, http.MethodPost, "/v1/kms/decrypt", nil, r, &out)
}

// PutPolicy creates or replaces a policy.
func (c *Client) PutPolicy(ctx context.Context, name string, doc json.RawMessage) (Policy, error) {
	var out Policy
	return out, c.Do(ctx, http.MethodPut, "/v1/policies/"+PathEscape(name), nil, doc, &out)
}

// ListPolicies lists every policy in name order, following the pages.
func (c *Client) ListPolicies(ctx context.Context) ([]Policy, error) {
	return listAll(ctx, c, "/v1/policies", func(l PolicyList) ([]Policy, string) { return l.Policies, l.Next })
}

// listAll follows the pages of a listing whose answer is L to the end.
func listAll[L, T any](ctx context.Context, c *Client, path string, items func(L) ([]T, string)) ([]T, error) {
	var all []T
	after := ""
	for {
		q := url.Values{}
		if after != "" {
			q.Set("after", after)
		}
		var page L
		if err := c.Do(ctx, http.MethodGet, path, q, nil, &page); err != nil {
			return all, err
		}
		got, next := items(page)
		all = append(all, got...)
		if next == "" {
			return all, nil
		}
		if next <= after {
			return all, fmt.Errorf("list %s: the server's next cursor %q does not advance", path, next)
		}
		after = next
	}
}

// GetPolicy shows one policy.
func (c *Client) GetPolicy(ctx context.Context, name string) (Policy, error) {
	var out Policy
	return out, c.Do(ctx, http.MethodGet, "/v1/policies/"+PathEscape(name), nil, nil, &out)
}

// DeletePolicy deletes a policy.
func (c *Client) DeletePolicy(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/policies/"+PathEscape(name), nil, nil, nil)
}

// CreateToken creates a token; the answer's Token field is shown only once.
func (c *Client) CreateToken(ctx context.Context, r CreateTokenRequest) (Token, error) {
	var out Token
	return out, c.Do(ctx, http.MethodPost, "/v1/tokens", nil, r, &out)
}

// ListTokens lists every token (never their secrets) in id order,
// following the pages.
func (c *Client) ListTokens(ctx context.Context) ([]Token, error) {
	return listAll(ctx, c, "/v1/tokens", func(l TokenList) ([]Token, string) { return l.Tokens, l.Next })
}

// RevokeToken revokes a token by id.
func (c *Client) RevokeToken(ctx context.Context, id string) (Token, error) {
	var out Token
	return out, c.Do(ctx, http.MethodDelete, "/v1/tokens/"+PathEscape(id), nil, nil, &out)
}

// ListAudit lists audit records since a time, optionally for one secret.
func (c *Client) ListAudit(ctx context.Context, since time.Time, secret string, limit int) ([]AuditRecord, error) {
	q := url.Values{}
	if !since.IsZero() {
		q.Set("since", since.UTC().Format(time.RFC3339Nano))
	}
	if secret != "" {
		q.Set("secret", secret)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out AuditList
	return out.Records, c.Do(ctx, http.MethodGet, "/v1/audit", q, nil, &out)
}

// VerifyAudit checks the audit hash chain.
func (c *Client) VerifyAudit(ctx context.Context) (AuditVerify, error) {
	var out AuditVerify
	return out, c.Do(ctx, http.MethodPost, "/v1/audit/verify", nil, nil, &out)
}

// VerifyAuditCheckpoint checks the audit hash chain and that it still
// holds the record cp vouches for, unchanged.
func (c *Client) VerifyAuditCheckpoint(ctx context.Context, cp AuditCheckpoint) (AuditVerify, error) {
	var out AuditVerify
	return out, c.Do(ctx, http.MethodPost, "/v1/audit/verify", nil, AuditVerifyRequest{Checkpoint: &cp}, &out)
}

// AuditCheckpoint returns a signed checkpoint of the audit log's head.
func (c *Client) AuditCheckpoint(ctx context.Context) (AuditCheckpoint, error) {
	var out AuditCheckpoint
	return out, c.Do(ctx, http.MethodGet, "/v1/audit/checkpoint", nil, nil, &out)
}

// SetRotation configures a secret's rotation: the fields s sets change,
// the others keep their stored values (see RotationSettings). The answer
// lists what changed in Changes.
func (c *Client) SetRotation(ctx context.Context, name string, s RotationSettings) (RotationShow, error) {
	var out RotationShow
	return out, c.Do(ctx, http.MethodPut, secretPath(name, "rotation"), nil, s, &out)
}

// ShowRotation shows a secret's rotation settings and state.
func (c *Client) ShowRotation(ctx context.Context, name string) (RotationShow, error) {
	var out RotationShow
	return out, c.Do(ctx, http.MethodGet, secretPath(name, "rotation"), nil, nil, &out)
}

// EnableRotation turns scheduled rotation on (enable true) or off.
func (c *Client) EnableRotation(ctx context.Context, name string, enable bool) (RotationShow, error) {
	action := "disable"
	if enable {
		action = "enable"
	}
	var out RotationShow
	return out, c.Do(ctx, http.MethodPost, secretPath(name, "rotation", action), nil, nil, &out)
}

// RotationHistory lists a secret's rotations, newest first.
func (c *Client) RotationHistory(ctx context.Context, name string, limit int) ([]Run, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out RunList
	return out.Runs, c.Do(ctx, http.MethodGet, secretPath(name, "rotation", "history"), q, nil, &out)
}

// RotateOptions are the options of Rotate.
type RotateOptions struct {
	Wait         bool
	Emergency    bool
	KeepSessions bool
}

// Rotate starts a rotation now; with Wait it answers when it has ended.
func (c *Client) Rotate(ctx context.Context, name string, o RotateOptions) (RotateResult, error) {
	q := url.Values{}
	if o.Wait {
		q.Set("wait", "true")
	}
	if o.Emergency {
		q.Set("emergency", "true")
	}
	if o.KeepSessions {
		q.Set("keep_sessions", "true")
	}
	var out RotateResult
	return out, c.Do(ctx, http.MethodPost, secretPath(name, "rotate"), q, nil, &out)
}

// Status lists every secret with rotation settings that the token may
// describe, following the pages.
func (c *Client) Status(ctx context.Context) ([]StatusRow, error) {
	return listAll(ctx, c, "/v1/status", func(s Status) ([]StatusRow, string) { return s.Secrets, s.Next })
}
