package sqlite

import "context"

// NotifySecretChanged does nothing: one daemon owns a SQLite store, and
// its secrets.Service invalidates its own read cache on every write.
func (o *ops) NotifySecretChanged(context.Context, string) error { return nil }
