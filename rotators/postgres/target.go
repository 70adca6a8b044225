package postgres

import (
	"context"
	"fmt"

	"github.com/rotary-secrets/rotary/rotators"
)

var _ rotators.Targeter = (*Rotator)(nil)

// Target names the account a value is for: engine, host, port, dbname
// (postgres when the value names none, as the rotator connects) and role,
// plus the other role of an alternating pair. It reads the value leniently
// (another engine is reported as the engine field, not refused) so that
// the engine can say which field differs from the rotation's binding.
func (r *Rotator) Target(_ context.Context, req rotators.TargetRequest) (rotators.Target, error) {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	c, err := rotators.ParseDBCredentials(req.Value)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if c.Engine == "" || c.Engine == "postgresql" {
		c.Engine = "postgres"
	}
	if c.DBName == "" {
		c.DBName = "postgres"
	}
	var prevUser string
	if req.Previous.Len() > 0 {
		if prev, err := rotators.ParseDBCredentials(req.Previous); err == nil {
			prevUser = prev.Username
		}
	}
	return rotators.DBTarget(cfg, c, prevUser), nil
}

var _ rotators.EngineNamer = (*Rotator)(nil)

// Engine implements rotators.EngineNamer.
func (*Rotator) Engine() string { return "postgres" }
