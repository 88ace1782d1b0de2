package authn

import (
	"crypto/sha256"
	"strconv"
	"testing"
	"time"
)

func TestCacheBounded(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	for _, size := range []int{1, 10, 40, 1000, 5000} {
		c := newTokenCache(size)
		for i := range 3 * size {
			c.put(sha256.Sum256([]byte(strconv.Itoa(i))), &Identity{Expiry: now.Add(time.Hour)}, "kid", now)
		}
		if n := c.len(); n > size || n < size/2 {
			t.Errorf("size %d: %d entries", size, n)
		}
	}
}

func TestCacheEvictsExpiredFirst(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	c := newTokenCache(8) // one shard
	long := &Identity{Expiry: now.Add(time.Hour)}
	for i := range 4 {
		c.put(sha256.Sum256([]byte{byte(i)}), long, "kid", now)
	}
	for i := 4; i < 8; i++ {
		c.put(sha256.Sum256([]byte{byte(i)}), &Identity{Expiry: now.Add(time.Minute)}, "kid", now)
	}
	later := now.Add(2 * time.Minute) // the last four have expired
	for i := 8; i < 12; i++ {
		c.put(sha256.Sum256([]byte{byte(i)}), long, "kid", later)
	}
	for i := range 4 {
		if _, ok := c.get(sha256.Sum256([]byte{byte(i)}), later, live); !ok {
			t.Errorf("live entry %d evicted while expired ones remained", i)
		}
	}
}

func TestCacheNoSkewExtension(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	c := newTokenCache(10)
	k := sha256.Sum256([]byte("k"))
	c.put(k, &Identity{Expiry: now.Add(time.Second)}, "kid", now)
	if _, ok := c.get(k, now.Add(999*time.Millisecond), live); !ok {
		t.Error("miss before exp")
	}
	if _, ok := c.get(k, now.Add(time.Second), live); ok {
		t.Error("hit at exp")
	}
	c.put(k, &Identity{Expiry: now}, "kid", now)
	if c.len() != 0 {
		t.Error("cached a token already at exp")
	}
}

func live(string) bool { return true }
