package schedules

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/robfig/cron/v3"
)

// Job is a periodic housekeeping task.
type Job struct {
	Name string
	// Spec is a cron spec for robfig/cron ("@every 1m", "0 * * * *").
	Spec string
	// Run does the work. It must be safe to run on several daemons at
	// once; the Lock below makes that rare, not impossible (a lock can
	// expire under a slow run).
	Run func(ctx context.Context) error
}

// Locker takes a named lock for a while, so that of several daemons only
// one runs a job at a time. It reports false if another holds it.
type Locker interface {
	TryLock(ctx context.Context, name string, hold time.Duration) (bool, error)
}

// Housekeeper runs Jobs on robfig/cron's own runner, with panic recovery,
// skipping a run while the previous one of the same job is still going.
type Housekeeper struct {
	c      *cron.Cron
	lock   Locker
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
}

// NewHousekeeper schedules jobs. Start runs them.
func NewHousekeeper(jobs []Job, lock Locker, log *slog.Logger) (*Housekeeper, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Housekeeper{lock: lock, log: log}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	cl := cronLogger{log}
	h.c = cron.New(cron.WithChain(cron.Recover(cl), cron.SkipIfStillRunning(cl)), cron.WithLogger(cl))
	for _, j := range jobs {
		if _, err := h.c.AddFunc(j.Spec, h.wrap(j)); err != nil {
			return nil, fmt.Errorf("housekeeping job %s: %w", j.Name, err)
		}
	}
	return h, nil
}

func (h *Housekeeper) wrap(j Job) func() {
	return func() {
		ctx, cancel := context.WithTimeout(h.ctx, 10*time.Minute)
		defer cancel()
		if h.lock != nil {
			ok, err := h.lock.TryLock(ctx, "housekeeping:"+j.Name, 5*time.Minute)
			if err != nil {
				h.log.Warn("housekeeping lock", "job", j.Name, "err", err)
				return
			}
			if !ok {
				return // another daemon runs it
			}
		}
		start := time.Now()
		if err := j.Run(ctx); err != nil {
			h.log.Warn("housekeeping job failed", "job", j.Name, "err", err)
			return
		}
		h.log.Debug("housekeeping job done", "job", j.Name, "took", time.Since(start))
	}
}

// RunNow runs every job once, synchronously (at start, and for tests).
func (h *Housekeeper) RunNow(jobs []Job) {
	for _, j := range jobs {
		h.wrap(j)()
	}
}

// Start starts the cron runner.
func (h *Housekeeper) Start(context.Context) error {
	h.c.Start()
	return nil
}

// Stop stops scheduling and waits for running jobs (they see their
// context cancelled). Idempotent.
func (h *Housekeeper) Stop() {
	h.cancel()
	<-h.c.Stop().Done()
}

// cronLogger adapts slog to cron's logger; panics caught by cron.Recover
// are logged here as errors.
type cronLogger struct{ l *slog.Logger }

func (c cronLogger) Info(msg string, kv ...any) { c.l.Debug("cron: "+msg, kv...) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error("cron: "+msg, append(kv, "err", err)...)
}
