package kms

import (
	"errors"
	"fmt"
)

// Errors returned by Manager. Callers test them with errors.Is; messages
// carry context (the region, the key) but never a value or key material.
var (
	// ErrDecrypt is the one error Open, Decrypt and Rewrap return when a
	// ciphertext does not open, whatever the reason: tampering, truncation,
	// a ciphertext moved to another secret, version or region, a wrong
	// encryption context, or a key that is unknown, disabled, pending
	// deletion or purged. It deliberately says nothing more.
	ErrDecrypt = errors.New("kms: decryption failed")

	// ErrWrongRootKey: the root key given to New is not the one the store
	// was first opened with.
	ErrWrongRootKey = errors.New("kms: wrong root key: it does not match the key check value this store was initialised with")

	// ErrInvalidArgument: a name, alias, key reference, window or other
	// argument is malformed or out of range. The message says which.
	ErrInvalidArgument = errors.New("kms: invalid argument")

	// ErrKeyDisabled: the key is disabled, so it cannot seal or encrypt.
	ErrKeyDisabled = errors.New("kms: key is disabled")

	// ErrKeyPendingDeletion: the key is scheduled for deletion, so it can
	// only be described, listed or have its deletion cancelled.
	ErrKeyPendingDeletion = errors.New("kms: key is pending deletion")

	// ErrInvalidState: the key's state does not allow the transition, such
	// as cancelling the deletion of a key that is not pending deletion.
	ErrInvalidState = errors.New("kms: invalid key state for this operation")
)

// kmsError is an error with its own message that matches a sentinel.
type kmsError struct {
	msg  string
	kind error
}

func (e *kmsError) Error() string        { return e.msg }
func (e *kmsError) Is(target error) bool { return target == e.kind }

func invalidf(format string, args ...any) error {
	return &kmsError{msg: "kms: " + fmt.Sprintf(format, args...), kind: ErrInvalidArgument}
}

func notFoundf(format string, args ...any) error {
	return &kmsError{msg: "kms: " + fmt.Sprintf(format, args...), kind: ErrNotFound}
}

func stateError(k Key, sentinel error) error {
	return &kmsError{msg: fmt.Sprintf("%s (key %s)", sentinel.Error(), k.ID), kind: sentinel}
}
