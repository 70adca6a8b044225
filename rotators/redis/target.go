package redis

import (
	"context"
	"fmt"
	"slices"

	"github.com/rotary-secrets/rotary/rotators"
)

var _ rotators.Targeter = Rotator{}

// Target names the ACL user a value is for: engine, host, port and user
// ("default" when the value names none, as the rotator logs in). A Redis
// value's dbname selects nothing the rotator touches, so it is not part
// of the identity. The value is read leniently (another engine is
// reported as the engine field, not refused) so that the engine can say
// which field differs from the rotation's binding.
func (Rotator) Target(_ context.Context, req rotators.TargetRequest) (rotators.Target, error) {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	c, err := rotators.ParseDBCredentials(req.Value)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	if c.Engine == "" {
		c.Engine = "redis"
	}
	if c.Username == "" {
		c.Username = "default"
	}
	t := rotators.DBTarget(cfg.DBConfig, c, "")
	return slices.DeleteFunc(t, func(f rotators.TargetField) bool { return f.Name == "dbname" }), nil
}

var _ rotators.EngineNamer = Rotator{}

// Engine implements rotators.EngineNamer.
func (Rotator) Engine() string { return "redis" }
