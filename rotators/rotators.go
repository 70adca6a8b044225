// Package rotators defines the Rotator contract: the code that knows how to
// make and apply a new credential for one kind of target. The built-in
// rotators live in subpackages (postgres, mysql, redis, random); plugins
// implement the same contract over gRPC (plugins/sdk), and
// rotators/rotatortest is the conformance suite all of them pass.
//
// A rotation drives a rotator through four steps, each persisted by the
// engine before the next starts:
//
//  1. Create: make the pending value (a new password, or for the alternating
//     strategy the other user's credential with a new password). Pure: it
//     touches nothing outside the process. The engine stores the result as
//     version N+1 with stage pending before anything else happens.
//  2. Set: apply the pending value to the target. Must be idempotent:
//     running it twice with the same pending value is harmless, because
//     after a crash the engine runs it again.
//  3. Test: log in with a value and check it works. The engine tests the
//     pending value after Set, and after a crash tests pending and current
//     to learn which one the target accepts.
//  4. Finish: called after the store has made pending current. Cleans up on
//     the target (drop the old Redis password, in an emergency change the
//     other alternating user and end the old credential's sessions), and
//     reports what it did there through FinishRequest.Effects (effects.go).
//     A Finish failure never loses the new credential: it is already
//     current and working.
//
// A Set that finds neither the current nor the pending value accepted by
// the target returns a NoWorkingCredentialError, which the engine turns
// into a message that tells the operator how to fix it.
//
// When Test refuses the pending value and the current one still works,
// the engine rolls back: it calls Rollback of rotators that implement
// Rollbacker (undo what Set left on the target) and drops the pending
// version.
//
// Every database rotator checks, before it changes anything, that it
// talks to the configured account over the configured transport:
// CheckHost and CheckTransport on every value (transport.go), the
// session's own identity on every login, and for the single-user strategy
// that the server checks the user's password at all (ErrWrongIdentity);
// test_query is one read-only statement (ErrTestQuery).
//
// The database rotators keep the admin sessions of the admin and
// alternating strategies open between rotations, one bounded pool per
// admin secret and server, dropped when the admin credential changes or
// its login is refused (AdminPools, pool.go): a rotation then opens one
// new connection, the test login. Rotators that hold such resources
// implement io.Closer; the daemon closes them when it stops.
//
// Request structs let the contract grow without breaking plugins. Values
// are sensitive.Bytes so that they never print; errors returned by a
// rotator are passed through sensitive.Sanitize with every value the engine
// knows before they are stored or shown.
package rotators

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/rotary-secrets/rotary/sensitive"
)

// Rotator rotates credentials of one kind of target.
type Rotator interface {
	Create(ctx context.Context, req CreateRequest) (CreateResponse, error)
	Set(ctx context.Context, req SetRequest) error
	Test(ctx context.Context, req TestRequest) error
	Finish(ctx context.Context, req FinishRequest) error
}

// ConfigValidator is implemented by rotators that check their config when
// it is saved (`rotary rotation set`), so mistakes show before the first
// rotation.
type ConfigValidator interface {
	ValidateConfig(ctx context.Context, secretType string, config json.RawMessage) error
}

// EngineNamer is implemented by rotators of database accounts: Engine is
// the "engine" field of the db-credentials values they rotate, as their
// Target reports it. Saving settings refuses such a rotator for a secret
// whose current value names another engine (--rotator mysql on a
// PostgreSQL account), instead of failing at the first rotation.
type EngineNamer interface {
	Engine() string
}

// Rollbacker is implemented by rotators whose Set can leave something on
// the target that a rolled-back rotation must remove: the engine calls
// Rollback when Test refused the pending value but the current value
// still works, before it drops the pending version, so that no working
// credential is left that nobody stores (Redis: the pending password Set
// added beside the current one; alternating: the other user's new
// password). Rollback must be idempotent and must never make the current
// value stop working. An error is logged and recorded on the run; the
// rotation is rolled back either way.
type Rollbacker interface {
	Rollback(ctx context.Context, req RollbackRequest) error
}

// Offline is implemented by a rotator that touches no system outside
// rotary (random): its Set, Test and Finish have nothing to do on a
// target. For a scheduled rotation the engine then calls the steps one
// after another in memory and commits the whole rotation (the run, the
// pending version and its promotion, the history, the rotation state, the
// lease's release) in one transaction; a crash before that commit leaves
// nothing but the due time, so it runs again.
type Offline interface {
	Offline()
}

// RollbackRequest undoes Set of a pending value that failed its test.
type RollbackRequest struct {
	Secret  Secret
	Config  json.RawMessage
	Current Value // the credential that still works
	Pending Value // the credential Set applied, to remove
	Admin   Value
}

// Secret describes the secret being rotated. Never a value.
type Secret struct {
	Name    string
	Type    string
	Region  string
	Version int64 // the version the step concerns: the pending one for create/set/test
}

// CreateRequest asks for a new pending value.
type CreateRequest struct {
	Secret    Secret
	Config    json.RawMessage
	Current   Value // the current value; empty if the secret has none yet
	Previous  Value // the previous value, if any (alternating: the other user)
	Emergency bool
}

// CreateResponse carries the pending value.
type CreateResponse struct {
	Value Value
}

// SetRequest applies a pending value to the target.
type SetRequest struct {
	Secret  Secret
	Config  json.RawMessage
	Current Value // the credential that works now
	Pending Value // the credential to make work
	// Admin is the current value of the admin secret named in the config
	// (strategies admin and alternating); empty otherwise.
	Admin     Value
	Emergency bool
}

// TestRequest checks that a value works against the target.
type TestRequest struct {
	Secret Secret
	Config json.RawMessage
	Value  Value
}

// FinishRequest cleans up after the pending value became current.
type FinishRequest struct {
	Secret   Secret
	Config   json.RawMessage
	Current  Value // the new current value
	Previous Value // the value that was current before
	Admin    Value
	// Emergency: make Previous useless at once (alternating: change the
	// other user's password too) and, unless KeepSessions, end the open
	// sessions of Previous's user.
	Emergency    bool
	KeepSessions bool
	// Effects, when not nil, receives what Finish did on the target
	// beyond the rotation (sessions ended, a credential made useless),
	// for the run's record. Report with Effects.Add (nil-safe).
	Effects *Effects
}

// Value is secret bytes as the rotator sees them.
type Value = sensitive.Bytes

// ErrUnsupported is returned for a strategy or option a rotator does not
// offer.
var ErrUnsupported = errors.New("not supported by this rotator")

// Strategies of the database rotators.
const (
	StrategySingleUser  = "single-user"
	StrategyAdmin       = "admin"
	StrategyAlternating = "alternating"
)
