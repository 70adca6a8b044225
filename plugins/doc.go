// Package plugins is rotary's go-plugin host: it starts a rotator plugin
// (a separate executable built on plugins/sdk), checks it, talks to it
// over gRPC, and stops it. The catalog, supervision (one process per
// plugin, restarts with backoff) and the CLI build on Launch.
//
// # Launch
//
// Launch starts one plugin process from a Config: an absolute Path and the
// SHA256 registered for it, the environment the plugin gets, a start
// timeout and a call timeout. It returns a *Plugin once the handshake is
// done and the plugin has answered Info.
//
//   - sha256 pinning: Launch hashes the file and refuses a mismatch with
//     ErrChecksum (naming both sums) before anything runs; go-plugin then
//     checks again, right before exec, with a fresh SecureConfig (a fresh
//     sha256.New() per start: a hash.Hash reused across starts would carry
//     state from the last one). The check and the exec are still two
//     moments, so the plugin file must live where only the daemon's
//     operator can write.
//   - gRPC only (AllowedProtocols), AutoMTLS, the fixed handshake of
//     plugins/proto with VersionedPlugins at protocol version 1.
//   - Environment: nothing of the daemon's is inherited (SkipHostEnv): the
//     plugin sees Config.Env and go-plugin's own PLUGIN_* variables (the
//     handshake cookie, ports, protocol versions, the host's client
//     certificate for mTLS). ROTARY_* and PLUGIN_* keys are refused in
//     Config.Env.
//   - Process: its own process group (Setpgid), killed whole by Close and
//     Kill, so children the plugin starts go too; on Linux a parent-death
//     SIGKILL (Pdeathsig) ends it when the daemon is killed, and the SDK's
//     watchdog exits a plugin whose parent changed.
//   - Time: StartTimeout bounds the start, handshake and Info (a plugin
//     that never answers is killed with its group); CallTimeout is the
//     deadline of every call (a shorter deadline of the caller wins). A
//     call cut by its deadline returns an error wrapping
//     context.DeadlineExceeded; a plugin that died returns ErrExited.
//
// # Values and logs
//
// Values cross as bytes and are sensitive.Bytes on both sides at once.
// An error from the plugin crosses as a gRPC status: the host scrubs from
// its message every value it sent in that call (whole, and the secret
// fields of JSON values: password, secret, token, key) and keeps the
// contract's sentinel errors (rotators.ErrUnsupported, ErrTargetMismatch,
// ErrWrongIdentity, ErrPlaintext, ErrTestQuery) for errors.Is. go-plugin's
// messages and everything the plugin writes to stderr or stdout reach
// Config.Logger with plugin=NAME, scrubbed of the values of the calls in
// flight or ended in the last minute, and of Config.Secrets.
//
// # The daemon's side (plugin:NAME)
//
// A rotation whose rotator is "plugin:NAME" should resolve to the catalog
// entry NAME (path, sha256, env), Launch it (or reuse the running process
// of NAME, shared by concurrent rotations) and hand the engine
// Plugin.Rotator(): it is a rotators.Targeter only when the plugin's
// rotator is one, because the engine binds rotations of Targeters to an
// account and refuses a Targeter that names none. ValidateConfig runs when
// the rotation's settings are saved. When a call returns ErrExited (or
// Exited() reports true) the supervisor Closes the handle and launches
// again with backoff; the step fails and the engine retries it. On
// shutdown every handle is Closed.
package plugins
