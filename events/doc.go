// Package events defines the facts rotary tells clients about ("secret X
// has version 7 current") and relays them. Writers put events into the
// store's outbox in the same transaction as the change they describe; the
// Relay delivers them at least once to its sinks (function hooks today;
// Redis and server-sent events next). An event never carries a secret
// value.
//
// The relay protocol:
//
//   - A relay claims a batch of undelivered events with a lease
//     (store.ClaimOutbox), hands it to every sink in ascending ID order,
//     and marks it delivered only when every sink returned nil. A sink
//     that fails keeps the whole batch in the outbox; the relay retries
//     with capped exponential backoff and jitter, the daemon goes on.
//   - Several daemons: each event is leased by one relay at a time; a
//     relay killed mid-delivery leaves its batch to the others when the
//     lease ends (a relay restarted under the same owner name takes it
//     back at once). Sinks must therefore be idempotent.
//   - Order per secret across daemons: ClaimOutbox never claims an event
//     while an earlier undelivered event of the same secret is leased by
//     another owner, and claims serialize, so one secret's events never
//     split between two relays.
//   - Latency: the daemon wakes its relay (Relay.Wake) after every commit
//     that wrote an event, so delivery starts at once; the poll interval
//     (default 1s) is the fallback for events written by other daemons.
//   - Delivered events are trimmed after outbox_retention (housekeeping).
package events
