package client

import (
	"context"
	"net/http"
	"time"
)

// RegisterPluginRequest is PUT /v1/plugins/{name}: register a plugin, or
// replace its registration.
type RegisterPluginRequest struct {
	// Path is the absolute path of the plugin executable on the daemon's
	// host.
	Path string `json:"path"`
	// SHA256 pins the file (hex). When empty the daemon pins the file's
	// current sha256 and says so (Plugin.SHA256Computed).
	SHA256 string `json:"sha256,omitempty"`
	// Env is the plugin's whole environment, KEY=VALUE. Not for secrets:
	// it is stored and shown in plain text.
	Env []string `json:"env,omitempty"`
}

// Plugin is a registered plugin: its registration, what it said about
// itself when it last started, and its process now.
type Plugin struct {
	Name      string    `json:"name"`
	Path      string    `json:"path"`
	SHA256    string    `json:"sha256"`
	Env       []string  `json:"env"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`

	Version        string     `json:"version"`
	SecretTypes    []string   `json:"secret_types"`
	Kinds          []string   `json:"kinds"`
	IdentityFields []string   `json:"identity_fields"`
	LastStartAt    *time.Time `json:"last_start_at"`
	// Status is "ok" or "failed" from the last start ("" before any).
	Status    string `json:"status"`
	LastError string `json:"last_error,omitempty"`

	// The running process on the daemon that answered, if any.
	PID      int `json:"pid,omitempty"`
	Restarts int `json:"restarts,omitempty"`
	// State of the process: running, restarting, stopped ("" when the
	// plugin has not run on this daemon since it started).
	State string `json:"state,omitempty"`

	// SHA256Computed is set on the answer to a registration without a
	// sha256: the daemon pinned the file's current hash.
	SHA256Computed bool `json:"sha256_computed,omitempty"`
}

// PluginList is GET /v1/plugins.
type PluginList struct {
	Plugins []Plugin `json:"plugins"`
}

func pluginPath(name string) string { return "/v1/plugins/" + PathEscape(name) }

// RegisterPlugin registers a plugin (or replaces its registration). The
// daemon starts it once and refuses a file that is not a rotary plugin.
func (c *Client) RegisterPlugin(ctx context.Context, name string, r RegisterPluginRequest) (Plugin, error) {
	var out Plugin
	return out, c.Do(ctx, http.MethodPut, pluginPath(name), nil, r, &out)
}

// ListPlugins lists every registered plugin in name order.
func (c *Client) ListPlugins(ctx context.Context) ([]Plugin, error) {
	var out PluginList
	return out.Plugins, c.Do(ctx, http.MethodGet, "/v1/plugins", nil, nil, &out)
}

// GetPlugin shows one registered plugin.
func (c *Client) GetPlugin(ctx context.Context, name string) (Plugin, error) {
	var out Plugin
	return out, c.Do(ctx, http.MethodGet, pluginPath(name), nil, nil, &out)
}

// RemovePlugin removes a plugin from the catalog; refused (409) while a
// rotation uses it.
func (c *Client) RemovePlugin(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, pluginPath(name), nil, nil, nil)
}
