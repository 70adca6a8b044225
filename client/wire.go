package client

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/rotary-secrets/rotary/rotators"
)

// The JSON documents of the HTTP API. The daemon encodes and decodes these
// same types, so the client and the server cannot drift apart.

// ErrorBody is every error response: {"error": "..."}.
type ErrorBody struct {
	Error string `json:"error"`
}

// CreateSecretRequest is POST /v1/secrets.
type CreateSecretRequest struct {
	Name        string            `json:"name"`
	Type        string            `json:"type,omitempty"`
	Region      string            `json:"region,omitempty"`
	Key         string            `json:"key,omitempty"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	Value       *Value            `json:"value,omitempty"`
}

// Value carries secret bytes in JSON: text as is, anything that is not
// valid UTF-8 as base64 with Encoding "base64".
type Value struct {
	Data     string `json:"data"`
	Encoding string `json:"encoding,omitempty"` // "" (text) or "base64"
}

// NewValue wraps b for the wire.
func NewValue(b []byte) *Value {
	if utf8.Valid(b) {
		return &Value{Data: string(b)}
	}
	return &Value{Data: base64.StdEncoding.EncodeToString(b), Encoding: "base64"}
}

// Bytes decodes the value.
func (v *Value) Bytes() ([]byte, error) {
	switch v.Encoding {
	case "":
		return []byte(v.Data), nil
	case "base64":
		b, err := base64.StdEncoding.DecodeString(v.Data)
		if err != nil {
			return nil, fmt.Errorf("value: invalid base64")
		}
		return b, nil
	default:
		return nil, fmt.Errorf("value: unknown encoding %q (use base64 or leave it out)", v.Encoding)
	}
}

// PutSecretRequest is POST /v1/secrets/{name}/versions.
type PutSecretRequest struct {
	Value *Value `json:"value"`
}

// SecretValue is GET /v1/secrets/{name}/value. Value is text, or base64
// when Encoding says so.
type SecretValue struct {
	Name     string   `json:"name"`
	Version  int64    `json:"version"`
	Stages   []string `json:"stages"`
	Value    string   `json:"value"`
	Encoding string   `json:"encoding,omitempty"`
}

// Bytes returns the decoded value.
func (s SecretValue) Bytes() ([]byte, error) {
	return (&Value{Data: s.Value, Encoding: s.Encoding}).Bytes()
}

// Version describes one version (no value).
type Version struct {
	Version     int64     `json:"version"`
	Stages      []string  `json:"stages"`
	Fingerprint string    `json:"fingerprint"`
	CreatedAt   time.Time `json:"created_at"`
	CreatedBy   string    `json:"created_by,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	KeyVersion  int       `json:"key_version,omitempty"`
}

// RotationInfo is the rotation part of a description.
type RotationInfo struct {
	Rotator        string         `json:"rotator"`
	Schedule       string         `json:"schedule"`
	Window         string         `json:"window"`
	Enabled        bool           `json:"enabled"`
	LastRotatedAt  *time.Time     `json:"last_rotated_at"`
	NextRotationAt *time.Time     `json:"next_rotation_at"`
	LastError      string         `json:"last_error"`
	Failing        bool           `json:"failing,omitempty"`
	Config         map[string]any `json:"config,omitempty"`
	// BoundTo is the identity of the account the rotation is bound to
	// (engine, host, port, dbname, username); empty for rotators that
	// touch no account.
	BoundTo string `json:"bound_to,omitempty"`
	// State is scheduled, manual, disabled or unschedulable; StateReason
	// says why a rotation is unschedulable.
	State       string `json:"state,omitempty"`
	StateReason string `json:"state_reason,omitempty"`
}

// Secret is GET /v1/secrets/{name} (describe) and an element of list.
type Secret struct {
	Name        string            `json:"name"`
	Type        string            `json:"type"`
	Region      string            `json:"region"`
	KeyID       string            `json:"key_id"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
	Versions    []Version         `json:"versions"`
	Rotation    *RotationInfo     `json:"rotation"`
	DeletedAt   *time.Time        `json:"deleted_at,omitempty"`
	PurgeAt     *time.Time        `json:"purge_at,omitempty"`
}

// SecretList is GET /v1/secrets[?limit=N&after=NAME]. Next, when set, is
// the after= of the next page.
type SecretList struct {
	Secrets []Secret `json:"secrets"`
	Next    string   `json:"next,omitempty"`
}

// Key is a master key.
type Key struct {
	ID             string     `json:"id"`
	Region         string     `json:"region"`
	Alias          string     `json:"alias,omitempty"` // "alias/NAME"
	Description    string     `json:"description,omitempty"`
	State          string     `json:"state"`
	PrimaryVersion int        `json:"primary_version"`
	RotationPeriod string     `json:"rotation_period,omitempty"`
	NextRotationAt *time.Time `json:"next_rotation_at,omitempty"`
	DeletionDate   *time.Time `json:"deletion_date,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// KeyList is GET /v1/keys[?limit=N&after=CURSOR]. Next, when set, is the
// after= of the next page.
type KeyList struct {
	Keys []Key  `json:"keys"`
	Next string `json:"next,omitempty"`
}

// CreateKeyRequest is POST /v1/keys.
type CreateKeyRequest struct {
	Region         string `json:"region"`
	Alias          string `json:"alias,omitempty"`
	Description    string `json:"description,omitempty"`
	RotationPeriod string `json:"rotation_period,omitempty"` // duration, e.g. 365d
}

// ScheduleDeletionRequest is POST /v1/keys/{ref}/schedule-deletion.
type ScheduleDeletionRequest struct {
	PendingWindow string `json:"pending_window,omitempty"` // default 30d
}

// RewrapRequest is POST /v1/keys/rewrap. The response is a stream of
// newline-delimited RewrapProgress documents; the last has Done set.
type RewrapRequest struct {
	Region string `json:"region,omitempty"`
}

// RewrapProgress is one line of the rewrap stream.
type RewrapProgress struct {
	Done      bool   `json:"done"`
	Total     int    `json:"total"`
	Scanned   int    `json:"scanned"`
	Rewrapped int    `json:"rewrapped"`
	Skipped   int    `json:"skipped"`
	Keys      int    `json:"keys"`
	Error     string `json:"error,omitempty"`
}

// DataKeyRequest is POST /v1/kms/generate-data-key.
type DataKeyRequest struct {
	Region  string            `json:"region,omitempty"`
	Key     string            `json:"key"`
	Context map[string]string `json:"context,omitempty"`
}

// DataKey is the answer: the plaintext key (base64) and its ciphertext.
type DataKey struct {
	KeyID      string `json:"key_id"`
	Plaintext  string `json:"plaintext"`  // base64
	Ciphertext string `json:"ciphertext"` // base64
}

// EncryptRequest is POST /v1/kms/encrypt.
type EncryptRequest struct {
	Region    string            `json:"region,omitempty"`
	Key       string            `json:"key"`
	Plaintext string            `json:"plaintext"` // base64
	Context   map[string]string `json:"context,omitempty"`
}

// EncryptResponse carries the ciphertext (base64).
type EncryptResponse struct {
	KeyID      string `json:"key_id"`
	Ciphertext string `json:"ciphertext"`
}

// DecryptRequest is POST /v1/kms/decrypt.
type DecryptRequest struct {
	Region     string            `json:"region,omitempty"`
	Ciphertext string            `json:"ciphertext"` // base64
	Context    map[string]string `json:"context,omitempty"`
}

// DecryptResponse carries the plaintext (base64).
type DecryptResponse struct {
	KeyID     string `json:"key_id"`
	Plaintext string `json:"plaintext"`
}

// Policy is a named policy document.
type Policy struct {
	Name      string         `json:"name"`
	Document  PolicyDocument `json:"document"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
}

// PolicyDocument is {"rules":[...]}.
type PolicyDocument struct {
	Rules []PolicyRule `json:"rules"`
}

// PolicyRule grants actions on secrets, keys or system resources matching a glob.
type PolicyRule struct {
	Secrets string   `json:"secrets,omitempty"`
	Keys    string   `json:"keys,omitempty"`
	System  string   `json:"system,omitempty"`
	Actions []string `json:"actions"`
}

// PolicyList is GET /v1/policies.
type PolicyList struct {
	Policies []Policy `json:"policies"`
	Next     string   `json:"next,omitempty"` // pass as ?after= for the next page
}

// CreateTokenRequest is POST /v1/tokens.
type CreateTokenRequest struct {
	Policies []string `json:"policies"`
	TTL      string   `json:"ttl,omitempty"`
	Name     string   `json:"name,omitempty"`
}

// Token describes a token. Secret is set only in the answer to create.
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name,omitempty"`
	Policies  []string   `json:"policies"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Token     string     `json:"token,omitempty"`
}

// TokenList is GET /v1/tokens.
type TokenList struct {
	Tokens []Token `json:"tokens"`
	Next   string  `json:"next,omitempty"` // pass as ?after= for the next page
}

// AuditRecord is one audit log entry.
type AuditRecord struct {
	Chain     int64     `json:"chain"`
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	TokenID   string    `json:"token_id"`
	Action    string    `json:"action"`
	Target    string    `json:"target"`
	Result    string    `json:"result"`
	RequestID string    `json:"request_id"`
	Detail    string    `json:"detail,omitempty"`
	Hash      string    `json:"hash"`
}

// AuditList is GET /v1/audit.
type AuditList struct {
	Records []AuditRecord `json:"records"`
}

// AuditVerify is POST /v1/audit/verify.
type AuditVerify struct {
	OK      bool  `json:"ok"`
	Records int64 `json:"records"` // in every chain
	// Chains is how many chains were checked (the legacy, the anchor and
	// every writer chain); Anchors how many anchor records bound them.
	Chains  int   `json:"chains"`
	Anchors int64 `json:"anchors"`
	// BadChain and BadSeq name the first record that cannot be trusted.
	BadChain *int64 `json:"bad_chain,omitempty"`
	BadSeq   int64  `json:"bad_seq,omitempty"`
	Problem  string `json:"problem,omitempty"`
	HeadHash string `json:"head_hash,omitempty"`
	// CheckpointSeq is the record a checkpoint given to verify vouched
	// for; OK then also means the log still holds it unchanged.
	CheckpointSeq *int64 `json:"checkpoint_seq,omitempty"`
}

// AuditCheckpoint is GET /v1/audit/checkpoint: the head of the audit log
// (record Seq has hash Hash, as of Time), signed with the daemon's Ed25519
// checkpoint key. Keep it outside the daemon; POST /v1/audit/verify with
// it later proves that the log still holds that record unchanged, which
// catches records cut from the end. The signature covers
// "rotary-audit-checkpoint-v1\x00" ‖ seq (8 bytes) ‖ time in Unix
// microseconds (8 bytes) ‖ hash length (4 bytes) ‖ hash, integers
// big-endian, so it can be checked offline with the public key.
type AuditCheckpoint struct {
	Format    string    `json:"format"`          // "rotary-audit-checkpoint-v2" (v1: a log with one chain)
	Chain     int64     `json:"chain,omitempty"` // the anchor chain (v2); absent in v1
	Seq       int64     `json:"seq"`
	Hash      string    `json:"hash"` // hex
	Time      time.Time `json:"time"`
	PublicKey string    `json:"public_key"` // Ed25519, standard base64
	Signature string    `json:"signature"`  // Ed25519, standard base64
}

// AuditVerifyRequest is the optional body of POST /v1/audit/verify.
type AuditVerifyRequest struct {
	Checkpoint *AuditCheckpoint `json:"checkpoint,omitempty"`
}

// RotationSettings is PUT /v1/secrets/{name}/rotation. The settings merge
// with the stored ones: a field left empty here (absent from the JSON)
// keeps its stored value. Schedule "none" (in JSON also "" or null)
// removes the schedule, leaving manual rotation only; Window "0s" removes
// the window; Config {} clears the rotator config (a config given
// replaces the stored one as a whole). Rotator is required when the
// secret has no rotation settings yet.
type RotationSettings struct {
	Rotator  string          `json:"rotator,omitempty"`
	Schedule string          `json:"schedule,omitempty"`
	Window   string          `json:"window,omitempty"`
	Config   json.RawMessage `json:"config,omitempty"`
	Enabled  *bool           `json:"enabled,omitempty"`
	// Rebind confirms binding the rotation to another account than the
	// one it is bound to (the account the current value names).
	Rebind bool `json:"rebind,omitempty"`
}

// RotationShow is a secret's rotation settings and state, with the next
// due times.
type RotationShow struct {
	Secret string `json:"secret"`
	RotationInfo
	Next []time.Time `json:"next,omitempty"`
	// Changes lists what a PUT changed (absent when nothing did, and in
	// answers to GET).
	Changes []RotationChange `json:"changes,omitempty"`
}

// RotationChange is one setting a PUT of rotation settings changed;
// config keys appear one by one as "config.KEY". "(none)" stands for a
// value that was or is now unset.
type RotationChange struct {
	Field string `json:"field"`
	From  string `json:"from"`
	To    string `json:"to"`
}

// String reads "schedule: @daily -> @every 2h".
func (c RotationChange) String() string { return c.Field + ": " + c.From + " -> " + c.To }

// Schedule states of a rotation (RotationInfo.State, StatusRow.State).
const (
	RotationScheduled     = "scheduled"     // rotated on its schedule
	RotationManual        = "manual"        // no schedule: rotated only on request
	RotationDisabled      = "disabled"      // scheduled rotation turned off
	RotationUnschedulable = "unschedulable" // has a schedule the daemon cannot follow: see StateReason
)

// RotateResult answers POST /v1/secrets/{name}/rotate: the run record when
// the caller waited, or only the state "started".
type RotateResult struct {
	Secret string `json:"secret"`
	State  string `json:"state"`
	Run    *Run   `json:"run,omitempty"`
}

// Run is one rotation in the history.
type Run struct {
	ID             string     `json:"id"`
	Secret         string     `json:"secret"`
	Trigger        string     `json:"trigger"`
	State          string     `json:"state"`
	Step           string     `json:"step"`
	PendingVersion int64      `json:"pending_version,omitempty"`
	Attempt        int        `json:"attempt,omitempty"`
	StartedAt      time.Time  `json:"started_at"`
	EndedAt        *time.Time `json:"ended_at,omitempty"`
	Error          string     `json:"error,omitempty"`
	Steps          []RunStep  `json:"steps"`
	// Effects: what the rotation did on the target beyond the rotation
	// (sessions ended, credentials made useless), once its cleanup ran.
	Effects []RunEffect `json:"effects,omitempty"`
}

// RunEffect is one effect of a rotation on its target, e.g.
// {"kind":"sessions_ended","target":"role \"app\"","count":3}; its
// String says it in words. Never a value.
type RunEffect = rotators.Effect

// EffectsSummary says in one line what the run did beyond the rotation,
// e.g. `ended 3 sessions of role "app"; made the previous credential of
// role "app_b" useless`; "" for nothing.
func (r Run) EffectsSummary() string { return rotators.EffectsSummary(r.Effects) }

// RunStep is one step of a run.
type RunStep struct {
	Step      string     `json:"step"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	Result    string     `json:"result"`
	Error     string     `json:"error,omitempty"`
}

// RunList is GET /v1/secrets/{name}/rotation/history.
type RunList struct {
	Runs []Run `json:"runs"`
}

// StatusRow is one secret in GET /v1/status.
type StatusRow struct {
	Name          string     `json:"name"`
	Type          string     `json:"type"`
	Rotator       string     `json:"rotator"`
	Schedule      string     `json:"schedule"`
	Enabled       bool       `json:"enabled"`
	LastRotatedAt *time.Time `json:"last_rotated_at"`
	NextRotation  *time.Time `json:"next_rotation_at"`
	LastResult    string     `json:"last_result"`
	LastError     string     `json:"last_error,omitempty"`
	Failing       bool       `json:"failing"`
	// State and StateReason: see RotationInfo.
	State       string `json:"state,omitempty"`
	StateReason string `json:"state_reason,omitempty"`
}

// Status is GET /v1/status.
type Status struct {
	Secrets []StatusRow `json:"secrets"`
	Next    string      `json:"next,omitempty"` // pass as ?after= for the next page
}
