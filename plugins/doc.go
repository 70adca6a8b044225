// Package plugins is rotary's go-plugin host: it starts a plugin (a
// separate executable built on plugins/sdk that serves a rotator, a hook,
// or both), checks it, talks to it over gRPC, and stops it. Launch runs
// one process; the Supervisor runs one shared process per plugin and
// restarts it with backoff; the catalog and the CLI build on them.
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
// # Kinds: rotators and hooks
//
// Protocol version 1 has two services, served as two plugin kinds of the
// same VersionedPlugins set: Rotator ("rotator": the four steps, Target,
// ValidateConfig, Rollback, Info) and Hook ("hook": Info and OnEvent,
// which carries the event JSON of shared/CONTRACT.md as bytes). Info.Kinds
// says which a plugin serves; a plugin built before hooks sends no kinds
// and is a rotator. Launch asks Info on the Rotator service and, when the
// plugin has none (a hook-only plugin), on the Hook service. A call of a
// kind the plugin does not serve fails at once, before anything crosses,
// with ErrNotServed ("plugin x serves no hook"). OnEvent has the deadline,
// scrubbing and error handling of the rotator's calls; the host refuses a
// body that is not JSON; the SDK decodes it into events.Event, ignoring
// fields it does not know.
//
// # Supervisor
//
// The daemon resolves "plugin:NAME" with Supervisor.Rotator and delivers
// the events of `--plugin NAME` hooks with Supervisor.OnEvent.
//
//   - One process per plugin, shared: concurrent callers share one
//     running process, and one start when none runs (the callers that
//     arrive during a start wait for it, each within its own context).
//     The start itself is bound to the supervisor (Close ends it), not to
//     the caller that happened to trigger it.
//   - Every start calls SupervisorConfig.Lookup (the catalog) again, so a
//     re-registration takes effect at the next start, and Launch checks
//     the sha256 again: a file changed since it was registered is refused
//     (ErrChecksum), nothing of it runs. Stop after a re-registration or a
//     removal makes the next use start at once. A Lookup error (not
//     registered) is returned as is and starts no backoff.
//   - Exits: a call that returns ErrExited, or finds the process exited,
//     forgets the process (killed with its group), counts a restart and
//     fails the step; the engine retries it by its rules. Hangs: a call
//     cut by the plugin's own CallTimeout while the caller's context is
//     still alive means the plugin hangs: it is killed with its group and
//     replaced in the same way (a shorter deadline of the caller only
//     fails that call). Other calls in flight on that process then fail
//     with ErrExited.
//   - Backoff: after a crash, a hang or a failed start, the next start
//     waits BackoffBase·2^(n-1) (capped at BackoffMax) for the n-th failure
//     in a row; a process that ran longer than BackoffMax starts the count
//     over. Meanwhile calls fail at once with `plugin "x" is restarting (in
//     4s) after: <reason>`.
//   - Rotator returns a proxy that calls the current process at every
//     step (so a restart between steps is invisible to the engine but for
//     the failed step). It is a rotators.Targeter only when the plugin's
//     rotator is one (the engine binds rotations of Targeters to an
//     account and refuses a Targeter that names none), and always a
//     ConfigValidator and a Rollbacker. A hook-only plugin has no Rotator.
//   - Status lists every plugin started: pid, running|backoff|stopped,
//     start time, restarts, the last error scrubbed of the daemon's
//     secrets (SupervisorConfig.Secrets); OnStart tells the catalog the
//     outcome of every start.
//   - Metrics: rotary_plugin_starts_total{plugin,result=ok|checksum|error},
//     rotary_plugin_restarts_total{plugin},
//     rotary_plugin_call_duration_seconds{plugin,method} and
//     rotary_plugin_call_failures_total{plugin,method,kind=deadline|exited|error}.
//     Labels are plugin names and method names, never a value.
//   - Leftovers of a daemon killed with -9: the parent-death signal ends
//     the plugin, but not the children it started in its group. With a
//     StateDir the supervisor records each running plugin's process group
//     (pgid, executable path, start time of the leader, and the daemon's
//     own pid and start time) in a file, and NewSupervisor kills the
//     groups a daemon that no longer runs recorded (a record of a daemon
//     that runs, sharing the directory, is left alone): when the
//     leader still runs, only if it runs the recorded executable and
//     started when recorded (pids are reused: otherwise nothing is
//     killed); when the leader is gone but members remain, they are the
//     plugin's children (a group's number is not reused while it has
//     members). Outside Linux nothing is killed (no /proc to check with).
//   - Close kills every process with its group, waits for the starts in
//     flight (at most StartTimeout) and calls plugin.CleanupClients; later
//     calls fail with ErrClosed.
package plugins
