package client

import (
	"context"
	"net/http"
	"time"
)

// Hook is a function hook as `rotary hook list` shows it. Its webhook
// signing secret is never returned after AddHook.
type Hook struct {
	Name    string `json:"name"`
	On      string `json:"on"`                // finished, failed, all
	Secrets string `json:"secrets,omitempty"` // glob; empty: every secret
	Kind    string `json:"kind"`              // exec, webhook, plugin
	Target  string `json:"target"`            // command, URL or plugin name
	Shell   bool   `json:"shell,omitempty"`
	Timeout string `json:"timeout"`
	// Delivery state.
	State          string     `json:"state"` // ok, failing
	LastDeliveryAt *time.Time `json:"last_delivery_at,omitempty"`
	Delivered      int64      `json:"delivered"`
	Failures       int64      `json:"failures"`
	Dropped        int64      `json:"dropped"`
	Backlog        int        `json:"backlog"`
	LastError      string     `json:"last_error,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
}

// AddHookRequest adds a hook. Kind is exec, webhook or plugin; Target the
// command, URL or plugin name. Secret (webhook only) is the signing
// secret; when empty the daemon generates one and returns it once.
type AddHookRequest struct {
	Name    string `json:"name"`
	On      string `json:"on"`
	Secrets string `json:"secrets,omitempty"`
	Kind    string `json:"kind"`
	Target  string `json:"target"`
	Shell   bool   `json:"shell,omitempty"`
	Timeout string `json:"timeout,omitempty"`
	Secret  []byte `json:"secret,omitempty"`
}

// AddHookResponse is the added hook and, for a webhook added without a
// secret, the generated signing secret (shown this once).
type AddHookResponse struct {
	Hook
	Secret string `json:"secret,omitempty"`
}

// HookList is the answer of GET /v1/hooks.
type HookList struct {
	Hooks []Hook `json:"hooks"`
}

// AddHook adds a hook.
func (c *Client) AddHook(ctx context.Context, r AddHookRequest) (AddHookResponse, error) {
	var out AddHookResponse
	return out, c.Do(ctx, http.MethodPost, "/v1/hooks", nil, r, &out)
}

// ListHooks lists every hook with its delivery state.
func (c *Client) ListHooks(ctx context.Context) ([]Hook, error) {
	var out HookList
	err := c.Do(ctx, http.MethodGet, "/v1/hooks", nil, nil, &out)
	return out.Hooks, err
}

// RemoveHook removes a hook and its pending deliveries.
func (c *Client) RemoveHook(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/hooks/"+PathEscape(name), nil, nil, nil)
}
