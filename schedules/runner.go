package schedules

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// ErrNothingDue is what Queue.EarliestDue returns when nothing is
// scheduled.
var ErrNothingDue = errors.New("nothing is scheduled")

// Item is one claimed piece of due work.
type Item struct {
	Key     string    // the secret name
	Due     time.Time // when it was due
	Payload any       // the queue's own record, handed back to Handle
}

// Queue is the durable due-queue the runner drains. Claims are leases: an
// item returned by ClaimDue belongs to this runner until Handle releases
// it or the lease expires, so several runners (several daemons on one
// PostgreSQL) never run one item twice.
type Queue interface {
	EarliestDue(ctx context.Context) (time.Time, error)
	ClaimDue(ctx context.Context, now time.Time, limit int) ([]Item, error)
}

// RunnerConfig configures a Runner.
type RunnerConfig struct {
	Queue  Queue
	Handle func(ctx context.Context, it Item)
	// Concurrency bounds the items handled at once (default 8).
	Concurrency int
	// MaxSleep bounds the sleep between looks at the queue, so that work
	// scheduled by another daemon is seen (default 5s).
	MaxSleep time.Duration
	// Busy is the pause when due items exist but none could be claimed
	// (another daemon holds them; default 500ms).
	Busy   time.Duration
	Now    func() time.Time
	After  func(time.Duration) <-chan time.Time // for tests; default time.After
	Logger *slog.Logger
}

// Runner sleeps until the earliest due time, claims due items in batches
// and hands each to Handle with bounded concurrency.
type Runner struct {
	cfg  RunnerConfig
	wake chan struct{}
	sem  chan struct{}
	wg   sync.WaitGroup

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{}
}

// NewRunner returns a Runner; Start runs it.
func NewRunner(cfg RunnerConfig) *Runner {
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 8)
	cfg.MaxSleep = cmp.Or(cfg.MaxSleep, 5*time.Second)
	cfg.Busy = cmp.Or(cfg.Busy, 500*time.Millisecond)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{cfg: cfg, wake: make(chan struct{}, 1), sem: make(chan struct{}, cfg.Concurrency), done: make(chan struct{})}
}

// Wake makes the runner look at the queue now (a schedule changed).
func (r *Runner) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Start runs the loop until Stop.
func (r *Runner) Start(ctx context.Context) error {
	ctx, r.cancel = context.WithCancel(ctx)
	go func() {
		defer close(r.done)
		r.loop(ctx)
	}()
	return nil
}

// Stop stops claiming, waits for the items being handled, and returns.
// Idempotent.
func (r *Runner) Stop() {
	r.stopOnce.Do(func() {
		if r.cancel == nil {
			return
		}
		r.cancel()
		<-r.done
		r.wg.Wait()
	})
}

// Running reports how many items are being handled.
func (r *Runner) Running() int { return len(r.sem) }

func (r *Runner) loop(ctx context.Context) {
	for ctx.Err() == nil {
		select { // a wake-up that is already waiting needs no sleep
		case <-r.wake:
		default:
		}
		wait := r.cfg.MaxSleep
		next, err := r.cfg.Queue.EarliestDue(ctx)
		switch {
		case errors.Is(err, ErrNothingDue):
		case err != nil:
			if ctx.Err() == nil {
				r.cfg.Logger.Warn("schedule runner: earliest due", "err", err)
			}
			wait = time.Second
		default:
			if d := next.Sub(r.cfg.Now()); d < wait {
				wait = d
			}
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			case <-r.cfg.After(wait):
			}
			continue
		}
		// Something is due: claim as many as there are free slots.
		free := cap(r.sem) - len(r.sem)
		if free == 0 {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			case <-r.cfg.After(r.cfg.Busy / 5):
			}
			continue
		}
		items, err := r.cfg.Queue.ClaimDue(ctx, r.cfg.Now(), free)
		if err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("schedule runner: claim", "err", err)
		}
		if len(items) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			case <-r.cfg.After(r.cfg.Busy):
			}
			continue
		}
		for _, it := range items {
			r.sem <- struct{}{}
			r.wg.Add(1)
			go func() {
				defer func() { <-r.sem; r.wg.Done(); r.Wake() }()
				r.cfg.Handle(context.WithoutCancel(ctx), it)
			}()
		}
	}
}
