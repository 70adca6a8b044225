// Package proto is the wire protocol between rotary and its plugins: the
// gRPC services Rotator and Hook generated from rotator.proto (checked in;
// `make proto` regenerates it and records generated.sha256, which the
// tests check), the go-plugin handshake, and the mapping of the rotators
// contract's sentinel errors to the ErrorDetail kinds that cross the wire.
//
// Plugin authors never import this package: plugins/sdk serves it, and the
// host (package plugins) calls it.
package proto

import (
	"context"
	"errors"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/rotary-secrets/rotary/rotators"
)

// ProtocolVersion is the version of the rotator protocol this package
// speaks. A later, incompatible protocol is served beside it as version 2
// in VersionedPlugins, so old plugins keep working.
const ProtocolVersion = 1

// The kinds of plugin, and the names they are dispensed under.
const (
	RotatorPluginName = "rotator"
	HookPluginName    = "hook"
)

// Handshake is the fixed go-plugin handshake of rotary's plugins. The
// cookie is not a secret: it only stops a plugin binary from being run by
// hand as if it were a command. Its variable deliberately does not start
// with ROTARY_ (a plugin sees no ROTARY_* variable at all).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "PLUGIN_ROTARY_ROTATOR",
	MagicCookieValue: "ba96490045cc4aac2ceaf0ac6a8262a3",
}

// RotatorPlugin is the go-plugin glue of the Rotator service: the plugin
// side sets Server, the host side gets a RotatorClient from Dispense.
type RotatorPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl RotatorServer
}

var _ plugin.GRPCPlugin = (*RotatorPlugin)(nil)

// GRPCServer registers the rotator on the plugin's gRPC server.
func (p *RotatorPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("rotator plugin: no server")
	}
	RegisterRotatorServer(s, p.Impl)
	return nil
}

// HookPlugin is the go-plugin glue of the Hook service: the plugin side
// sets Impl, the host side gets a HookClient from Dispense.
type HookPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl HookServer
}

var _ plugin.GRPCPlugin = (*HookPlugin)(nil)

// GRPCServer registers the hook on the plugin's gRPC server.
func (p *HookPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("hook plugin: no server")
	}
	RegisterHookServer(s, p.Impl)
	return nil
}

// GRPCClient returns the host's client of the hook.
func (p *HookPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewHookClient(c), nil
}

// GRPCClient returns the host's client of the rotator.
func (p *RotatorPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewRotatorClient(c), nil
}

// PluginSets returns the VersionedPlugins of a host or plugin: the kinds
// it serves (a plugin) or may dispense (the host, which passes both); a
// nil kind is left out.
func PluginSets(r *RotatorPlugin, h *HookPlugin) map[int]plugin.PluginSet {
	set := plugin.PluginSet{}
	if r != nil {
		set[RotatorPluginName] = r
	}
	if h != nil {
		set[HookPluginName] = h
	}
	return map[int]plugin.PluginSet{ProtocolVersion: set}
}

// Error kinds: the sentinel errors of the rotators contract that keep
// their identity across the wire (errors.Is works on the host).
var errorKinds = []struct {
	kind string
	err  error
}{
	{"unsupported", rotators.ErrUnsupported},
	{"wrong_identity", rotators.ErrWrongIdentity},
	{"plaintext", rotators.ErrPlaintext},
	{"test_query", rotators.ErrTestQuery},
	{"target_mismatch", rotators.ErrTargetMismatch},
}

// ErrorKind names the first sentinel error of the contract that err
// wraps, or "".
func ErrorKind(err error) string {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.kind
		}
	}
	return ""
}

// KindError returns the sentinel error named kind, or nil for an unknown
// or empty kind.
func KindError(kind string) error {
	for _, k := range errorKinds {
		if k.kind == kind {
			return k.err
		}
	}
	return nil
}
