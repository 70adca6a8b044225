package secrets

import (
	"strconv"
	"testing"
	"time"
)

// TestCacheFillIsPerSecret: a read that started before an invalidation
// of its own secret, or of everything, must not store what it fetched;
// one that only saw other secrets invalidated may (other daemons' writes
// to other secrets must not keep the cache from filling).
func TestCacheFillIsPerSecret(t *testing.T) {
	c := newReadCache(time.Minute, 1<<20, time.Now, nil)
	g := c.gen // a read of "x" starts
	c.invalidate("other")
	if !c.fillable("x", g) {
		t.Errorf("fillable(x) after invalidate(other) = false, want true")
	}
	c.invalidate("x")
	if c.fillable("x", g) {
		t.Errorf("fillable(x) after invalidate(x) = true, want false: a stale copy could stay")
	}
	if !c.fillable("x", c.gen) {
		t.Errorf("fillable(x) for a read started after invalidate(x) = false, want true")
	}
	g = c.gen
	c.invalidateAll()
	if c.fillable("y", g) {
		t.Errorf("fillable(y) after invalidateAll = true, want false")
	}
	// Past 100,000 remembered secrets the memory is cleared, which
	// counts as invalidating everything.
	g = c.gen
	for i := range 100_001 {
		c.invalidate("n" + strconv.Itoa(i))
	}
	if len(c.genOf) > 100_000 {
		t.Errorf("genOf holds %d secrets, want at most 100000", len(c.genOf))
	}
	if c.fillable("never-invalidated", g) {
		t.Errorf("fillable after the memory was cleared = true, want false")
	}
}
