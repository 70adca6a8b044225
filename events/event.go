package events

import (
	"encoding/json"
	"time"
)

// Event types.
const (
	VersionCreated = "version_created"
	Rotated        = "rotated"
	RotationFailed = "rotation_failed"
	Deleted        = "deleted"
	Restored       = "restored"
)

// Reasons of a deleted event: the secret is scheduled for deletion (it
// can be restored), or it is gone for good (purged after its recovery
// window, or deleted with force); a secret of the same name created later
// starts again at version 1.
const (
	ReasonDelete = "delete"
	ReasonPurge  = "purge"
)

// Event is the JSON document published for every change. Its shape is part
// of the user-facing contract.
type Event struct {
	ID          int64     `json:"id,omitempty"`
	Event       string    `json:"event"`
	Secret      string    `json:"secret"`
	Version     int64     `json:"version,omitempty"`
	Stages      []string  `json:"stages,omitempty"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Region      string    `json:"region,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	At          time.Time `json:"at"`
}

// Marshal encodes e as the contract's JSON.
func (e Event) Marshal() []byte {
	b, err := json.Marshal(e)
	if err != nil { // cannot happen: every field is a plain value
		panic("events: marshal: " + err.Error())
	}
	return b
}
