// Package hooks runs function hooks: a command (exec), a webhook or a hook
// plugin called when a rotation finishes or fails (or on every event).
//
// Delivery, in two stages, both durable:
//
//  1. The outbox relay (package events) hands every event to the Manager's
//     Sink, which writes one pending row per matching hook into the
//     hook-deliveries table, in one transaction, and caps each hook's
//     backlog (the oldest pending rows are dropped with a warning and
//     counted). The relay marks the event delivered only after that
//     commit, so no event is lost and none fans out twice (the rows are
//     keyed by hook and event).
//  2. Workers on every daemon claim due deliveries with leases. Order per
//     (hook, secret): a delivery is claimed only when no earlier pending
//     delivery of the same hook and secret exists, leased or not, so a
//     later event waits for an earlier one even across daemons. A success
//     marks the row done; a failure schedules a retry with capped
//     exponential backoff and jitter; after MaxAttempts or MaxAge the
//     delivery is given up and the hook marked failing until its next
//     success. A daemon killed mid-delivery leaves its rows to the others
//     when the lease (longer than any hook's timeout) expires: delivery is
//     at least once, and webhooks carry X-Rotary-Delivery to dedupe.
//
// A hook never delays or changes a rotation: rotations only write the
// outbox event; everything here runs later, on its own goroutines, under
// its own timeouts.
//
// Hygiene: an exec hook runs without a shell unless asked (argv split
// with shell-words rules), in its own process group killed whole at its
// timeout, with an environment of PATH and the ROTARY_EVENT,
// ROTARY_SECRET, ROTARY_VERSION variables only; its output is bounded and
// scrubbed before it reaches the log. A webhook's signing secret is
// stored sealed (AES-256-GCM under a key derived from the root key, the
// hook name as additional data) and is never logged or returned after add.
package hooks
