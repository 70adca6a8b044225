package sqlite

import (
	"context"

	"github.com/rotary-secrets/rotary/store/internal/sqlops"
)

// NotifySecretChanged does nothing: one daemon owns a SQLite store, and
// its secrets.Service invalidates its own read cache on every write.
func (dialect) NotifySecretChanged(context.Context, sqlops.Querier, string) error { return nil }
