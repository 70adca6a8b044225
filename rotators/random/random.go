// Package random is the rotator for secrets that applications read and no
// external system checks: it generates a new value of the secret's type
// (password, api-key, symmetric-key, generic) and has no target, so Set,
// Test and Finish have nothing to do beyond checking the value's shape.
package random

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/rotary-secrets/rotary/rotators"
	"github.com/rotary-secrets/rotary/sensitive"
)

// Config is the random rotator's config.
type Config struct {
	// Password is the policy for password and generic secrets.
	Password rotators.PasswordPolicy `json:"password,omitempty"`
	// Prefix is prepended to generated api-keys (e.g. "sk_live_").
	Prefix string `json:"prefix,omitempty"`
	// Bytes is the size of generated symmetric keys (16, 24, 32 or 64;
	// default 32) and the entropy of api-keys (default 32).
	Bytes int `json:"bytes,omitempty"`
}

// Rotator generates random values.
type Rotator struct{}

var (
	_ rotators.Rotator         = Rotator{}
	_ rotators.ConfigValidator = Rotator{}
	_ rotators.Offline         = Rotator{}
)

func parse(secretType string, raw json.RawMessage) (Config, error) {
	var c Config
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			if m := err.Error(); strings.HasPrefix(m, "json: unknown field ") {
				return c, fmt.Errorf("config: unknown field %s", strings.TrimPrefix(m, "json: unknown field "))
			}
			return c, errors.New("config: not a valid JSON object")
		}
	}
	switch secretType {
	case "password", "generic":
		if err := c.Password.Validate(); err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
	case "api-key":
		if c.Bytes == 0 {
			c.Bytes = 32
		}
		if c.Bytes < 16 || c.Bytes > 128 {
			return c, fmt.Errorf("config: bytes %d: api-keys take 16 to 128 bytes of entropy", c.Bytes)
		}
		for _, r := range c.Prefix {
			if r <= ' ' || r > '~' {
				return c, errors.New("config: prefix: printable ASCII without spaces only")
			}
		}
		if len(c.Prefix) > 64 {
			return c, errors.New("config: prefix: at most 64 characters")
		}
	case "symmetric-key":
		if c.Bytes == 0 {
			c.Bytes = 32
		}
		switch c.Bytes {
		case 16, 24, 32, 64:
		default:
			return c, fmt.Errorf("config: bytes %d: symmetric keys are 16, 24, 32 or 64 bytes", c.Bytes)
		}
	default:
		return c, fmt.Errorf("the random rotator makes password, api-key, symmetric-key and generic values, not %s", secretType)
	}
	return c, nil
}

// ValidateConfig implements rotators.ConfigValidator.
func (Rotator) ValidateConfig(_ context.Context, secretType string, raw json.RawMessage) error {
	_, err := parse(secretType, raw)
	return err
}

// Create implements rotators.Rotator.
func (Rotator) Create(_ context.Context, req rotators.CreateRequest) (rotators.CreateResponse, error) {
	c, err := parse(req.Secret.Type, req.Config)
	if err != nil {
		return rotators.CreateResponse{}, err
	}
	var v sensitive.Bytes
	switch req.Secret.Type {
	case "password", "generic":
		v, err = rotators.GeneratePassword(c.Password)
	case "api-key":
		b := make([]byte, c.Bytes)
		_, err = rand.Read(b)
		v = sensitive.Bytes(c.Prefix + base64.RawURLEncoding.EncodeToString(b))
	case "symmetric-key":
		b := make([]byte, c.Bytes)
		_, err = rand.Read(b)
		v = sensitive.Bytes(base64.StdEncoding.EncodeToString(b))
	}
	if err != nil {
		return rotators.CreateResponse{}, fmt.Errorf("generate: %w", err)
	}
	return rotators.CreateResponse{Value: v}, nil
}

// Set has no target to change.
func (Rotator) Set(context.Context, rotators.SetRequest) error { return nil }

// Test checks the value is non-empty; there is no target to log in to.
func (Rotator) Test(_ context.Context, req rotators.TestRequest) error {
	if req.Value.Len() == 0 {
		return errors.New("empty value")
	}
	return nil
}

// Finish has nothing to clean up.
func (Rotator) Finish(context.Context, rotators.FinishRequest) error { return nil }

// Offline: the value lives only in rotary, so the engine commits a
// random rotation in one transaction.
func (Rotator) Offline() {}
