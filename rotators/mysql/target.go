package mysql

import (
	"context"
	"fmt"

	"github.com/rotary-secrets/rotary/rotators"
)

var _ rotators.Targeter = (*Rotator)(nil)

// Target names the account a value is for: engine, host, port, dbname and
// user, plus the other user of an alternating pair (the account's host
// part, account_host, is in the config, which the binding is saved with).
// It reads the value leniently (another engine is reported as the engine
// field, not refused) so that the engine can say which field differs from
// the rotation's binding.
func (*Rotator) Target(_ context.Context, req rotators.TargetRequest) (rotators.Target, error) {
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	c, err := rotators.ParseDBCredentials(req.Value)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	if c.Engine == "" {
		c.Engine = Engine
	}
	var prevUser string
	if req.Previous.Len() > 0 {
		if prev, err := rotators.ParseDBCredentials(req.Previous); err == nil {
			prevUser = prev.Username
		}
	}
	return rotators.DBTarget(cfg.DBConfig, c, prevUser), nil
}

var _ rotators.EngineNamer = (*Rotator)(nil)

// Engine implements rotators.EngineNamer.
func (*Rotator) Engine() string { return Engine }
