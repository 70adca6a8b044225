// Package auth decides who may do what: bearer tokens, stored only as
// hashes, and the policies attached to them.
//
// # Tokens
//
// NewToken makes a token of 32 random bytes, written as "rot_" followed by
// 43 base64url characters. Only its SHA-256 hash is stored. A fast,
// unsalted hash is the right tool here, unlike for passwords: the token has
// 256 bits of entropy, so nobody can guess it by trying candidates against
// a stolen hash, however fast the hash is; a slow KDF would only make every
// request slower. Because the hash is deterministic the store can index it
// and find a token in one lookup. Each token also has a public id,
// "tok_" and 12 hex characters, which audit records and `token revoke`
// use; the id is random and says nothing about the token.
//
// ParseToken refuses garbage (whitespace, control characters, absurd
// lengths, a "rot_" token of the wrong length or alphabet) before any
// lookup. Tokens without the "rot_" prefix are accepted only so that an
// operator-chosen root token (--dev-root-token, ROTARY_ROOT_TOKEN) keeps
// working; ValidateCustomToken checks those when they are configured.
//
// # Policies
//
// A policy is a list of rules. Each rule selects resources with exactly one
// of three globs and lists the actions it allows on them:
//
//	{"rules": [
//	  {"secrets": "app/*", "actions": ["list", "describe", "read"]},
//	  {"keys": "*", "actions": ["encrypt", "decrypt"]},
//	  {"system": "audit", "actions": ["admin"]}
//	]}
//
// What each selector allows:
//
//   - "secrets" rules allow list, describe, read, write, rotate, delete and
//     admin on secrets whose names match.
//   - "keys" rules allow encrypt, decrypt and admin on KMS keys whose names
//     match.
//   - "system" rules allow only admin, on the daemon's own resources:
//     policies, tokens, audit, plugins, hooks, keys and backup (see the
//     System* constants). A system glob must match at least one of them, so a typo
//     is refused instead of silently granting nothing.
//
// admin implies every other action valid on what the rule matches. No other
// action implies another: read does not imply describe or list, describe
// does not imply list, as AWS keeps GetSecretValue and DescribeSecret apart.
// A secret rule never grants anything on a key and the other way round.
// Anything no rule allows is denied. A token's policies are unioned.
//
// ParsePolicy is strict: exact field names (case matters), no unknown or
// repeated fields, no trailing data, known actions only, each valid on its
// rule's kind. Errors number rules from 0, as in JSON paths (rules[0]):
// `rule 2: unknown action "reed"`.
//
// # Globs
//
// A glob is matched against the whole name. '*' matches any run of
// characters, including none and including '/'; '?' matches exactly one
// character (one byte: names are ASCII); every other character matches
// itself. So "app/*" matches "app/db" and "app/prod/db", and "*" matches
// everything, like resource patterns in AWS IAM. Matching takes at most
// len(pattern)*len(name) steps; there is no backtracking explosion.
//
// # Delegation
//
// A token hands on only what it holds. Covers decides whether a set of
// policies grants everything a new policy document grants: every action of
// every rule must be granted by one rule of the same kind that lists the
// action (or admin) and whose glob contains the new rule's glob.
// GlobContains decides containment (is every name g matches also matched
// by h?) by running g against h symbol by symbol: a '*' of h consumes any
// run of g's symbols, a '?' of h one literal or '?' of g, a literal only
// itself, and a '*' of g only a '*' of h. This is sound (a yes is always
// right; FuzzGlobContains checks it against Match) but not complete: a glob
// covered only by the union of several rules ("a" and "a?*" for "a*") is
// reported as not covered, and the caller is refused. Work is bounded by
// MaxCoverWork. The API uses Covers for policy writes; token creation
// compares policy names (see daemon/api/access.go).
//
// # Suggested mapping of API calls to checks
//
// The API decides which check a call needs; this is the intended mapping.
//
//	secret list                 list on each secret (the listing is filtered)
//	secret describe, status     describe on the secret
//	secret get                  read on the secret
//	secret create, put, restore write on the secret
//	rotation set/enable/disable admin on the secret (it can point the daemon
//	                            at another secret); rotation show/history:
//	                            describe
//	rotate                      rotate on the secret
//	secret delete               delete on the secret
//	kms encrypt, generate-data-key  encrypt on the key
//	kms decrypt                 decrypt on the key
//	key rotate/disable/enable/deletion  admin on the key
//	key create, list, rewrap    admin on system "keys"
//	policy …, token …           admin on system "policies" / "tokens"
//	audit list, verify          admin on system "audit"
//	plugin …, hook …            admin on system "plugins" / "hooks"
//	backup                      admin on system "backup" (a copy of the
//	                            whole store: every envelope, token hash and
//	                            audit record)
package auth
