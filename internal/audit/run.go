package audit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Run is the flush loop: it replays spooled segments (those of an earlier
// process first), batches queued events by size and FlushInterval, inserts
// them or spools them while the database is unreachable, and keeps daily
// partitions created ahead. It returns after Close, or when ctx is cancelled
// — then everything still in memory goes to the database within a few
// seconds or to the spool before it returns.
//
// Give Run a context that outlives request handling (not the signal
// context) and stop the writer with Close after the HTTP server has drained:
// events committed after Run returned are spooled synchronously one by one.
func (w *Writer) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("audit writer: Run called twice")
	}
	defer close(w.done)
	w.ensurePartitions(ctx)
	nextPartitions := time.Now().Add(w.cfg.PartitionEvery)
	for {
		if w.spool != nil && len(w.pending) == 0 && w.spool.pending() && !time.Now().Before(w.retryAt) {
			w.replayOne(ctx)
		}
		var batch []*Event
		stopping := false
		if len(w.pending) > 0 {
			// The last batch went nowhere: wait, then retry it before taking
			// anything else, so memory stays bounded by the queue.
			stopping = w.wait(ctx, w.cfg.RetryInterval)
			batch, w.pending = w.pending, nil
		} else {
			batch, stopping = w.collect(ctx)
		}
		w.write(ctx, batch)
		if time.Now().After(nextPartitions) {
			w.ensurePartitions(ctx)
			nextPartitions = time.Now().Add(w.cfg.PartitionEvery)
		}
		if stopping {
			fctx, _ := w.stopCtx.Load().(context.Context)
			if fctx == nil || ctx.Err() != nil {
				// Cancelled without Close: the database gets a short chance,
				// the spool is the safe place.
				var cancel context.CancelFunc
				fctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
			}
			w.finish(fctx)
			return nil
		}
	}
}

// wait sleeps for d unless the writer is stopped first.
func (w *Writer) wait(ctx context.Context, d time.Duration) (stopping bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return false
	case <-w.stop:
		return true
	case <-ctx.Done():
		return true
	}
}

// collect gathers the next batch: held and refused events first, then queued
// ones until BatchSize or FlushInterval.
func (w *Writer) collect(ctx context.Context) ([]*Event, bool) {
	batch := make([]*Event, 0, w.cfg.BatchSize)
	w.mu.Lock()
	if n := min(len(w.held), w.cfg.BatchSize); n > 0 {
		batch = append(batch, w.held[:n]...)
		w.held = append(w.held[:0:0], w.held[n:]...)
		w.free.Add(int64(n))
	}
	if n := min(len(w.refusals), w.cfg.BatchSize-len(batch)); n > 0 {
		batch = append(batch, w.refusals[:n]...)
		w.refusals = append(w.refusals[:0:0], w.refusals[n:]...)
	}
	w.mu.Unlock()
	if len(batch) >= w.cfg.BatchSize {
		return batch, false
	}
	t := time.NewTimer(w.cfg.FlushInterval)
	defer t.Stop()
	for len(batch) < w.cfg.BatchSize {
		select {
		case e := <-w.queue:
			batch = append(batch, e)
			w.free.Add(1)
		case <-t.C:
			return batch, false
		case <-w.stop:
			return batch, true
		case <-ctx.Done():
			return batch, true
		}
	}
	return batch, false
}

// write inserts batch, or spools it while the database is unreachable or
// older events wait in the spool. A batch that can go nowhere becomes pending.
func (w *Writer) write(ctx context.Context, batch []*Event) {
	if len(batch) == 0 {
		return
	}
	if w.spool != nil && (w.spool.pending() || time.Now().Before(w.retryAt)) {
		err := w.spool.append(batch)
		if err == nil {
			w.spooled.Add(int64(len(batch)))
			return
		}
		w.log.Error("audit spool not writable; trying the database directly", "events", len(batch), "err", err)
	}
	if err := w.insert(ctx, batch); err == nil {
		if w.dbDown {
			w.dbDown = false
			w.log.Info("audit database reachable again", "events", len(batch))
		}
		return
	} else if ctx.Err() == nil && !w.dbDown {
		w.dbDown = true
		w.log.Warn("audit insert failed; spooling until the database is back", "events", len(batch), "err", err)
	}
	w.retryAt = time.Now().Add(w.cfg.RetryInterval)
	if w.spool != nil {
		err := w.spool.append(batch)
		if err == nil {
			w.spooled.Add(int64(len(batch)))
			return
		}
		w.log.Error("audit spool not writable; keeping the batch in memory", "events", len(batch), "err", err)
	}
	w.pending = batch
}

func (w *Writer) insert(ctx context.Context, batch []*Event) error {
	ictx, cancel := context.WithTimeout(ctx, w.cfg.InsertTimeout)
	defer cancel()
	start := time.Now()
	n, err := w.cfg.Store.InsertAuditEvents(ictx, batch)
	if err != nil {
		return err
	}
	w.m.observeBatch(len(batch), time.Since(start))
	w.written.Add(n)
	w.duplicates.Add(int64(len(batch)) - n)
	return nil
}

// replayOne replays the oldest spooled segment. The insert is idempotent
// and the segment is removed only afterwards, so a crash in between replays
// it again without duplicates.
func (w *Writer) replayOne(ctx context.Context) {
	seq, ok := w.spool.oldest()
	if !ok {
		return
	}
	path := w.spool.path(seq)
	res, err := readSegment(path)
	if err != nil {
		w.log.Error("audit spool segment unreadable", "segment", path, "err", err)
		w.retryAt = time.Now().Add(w.cfg.RetryInterval)
		return
	}
	if res.ignored > 0 {
		w.log.Warn("audit spool segment ends in a torn or corrupt record; ignoring it",
			"segment", path, "bytes", res.ignored)
	}
	for i := w.replayPos[seq]; i < len(res.records); {
		var chunk []*Event
		j := i
		for j < len(res.records) && (len(chunk) == 0 || len(chunk)+len(res.records[j]) <= 4*w.cfg.BatchSize) {
			chunk = append(chunk, res.records[j]...)
			j++
		}
		ictx, cancel := context.WithTimeout(ctx, w.cfg.InsertTimeout)
		start := time.Now()
		n, err := w.cfg.Store.InsertAuditEvents(ictx, chunk)
		cancel()
		if err != nil {
			w.replayPos[seq] = i
			w.retryAt = time.Now().Add(w.cfg.RetryInterval)
			if ctx.Err() == nil {
				w.log.Warn("audit spool replay failed; will retry", "segment", path, "err", err)
			}
			return
		}
		w.m.observeBatch(len(chunk), time.Since(start))
		w.replayed.Add(n)
		w.duplicates.Add(int64(len(chunk)) - n)
		i = j
	}
	if err := w.spool.remove(seq); err != nil {
		// Replayed but still on disk: the next replay inserts nothing twice.
		w.log.Error("audit spool segment replayed but not removed", "segment", path, "err", err)
		w.retryAt = time.Now().Add(w.cfg.RetryInterval)
		return
	}
	delete(w.replayPos, seq)
	w.log.Info("audit spool segment replayed", "segment", path, "events", countEvents(res.records))
	if !w.spool.pending() {
		w.dbDown = false
		w.log.Info("audit spool drained; writing directly again")
	}
}

func countEvents(recs [][]*Event) int {
	n := 0
	for _, r := range recs {
		n += len(r)
	}
	return n
}

// finish is the final drain: everything in memory goes to the database
// within ctx, else to the spool. Events that can go to neither are counted
// as dropped and logged.
func (w *Writer) finish(ctx context.Context) {
	w.spillMu.Lock()
	w.finished.Store(true)
	w.spillMu.Unlock()
	all := w.pending
	w.pending = nil
	w.mu.Lock()
	all = append(all, w.held...)
	all = append(all, w.refusals...)
	w.held, w.refusals = nil, nil
	w.mu.Unlock()
	for {
		select {
		case e := <-w.queue:
			all = append(all, e)
			continue
		default:
		}
		break
	}
	for len(all) > 0 {
		n := min(len(all), w.cfg.BatchSize)
		batch := all[:n]
		all = all[n:]
		if ctx.Err() == nil && (w.spool == nil || (!w.spool.pending() && time.Now().After(w.retryAt))) {
			if err := w.insert(ctx, batch); err == nil {
				continue
			}
			w.retryAt = time.Now().Add(w.cfg.RetryInterval)
		}
		if w.spool != nil {
			if err := w.spool.append(batch); err == nil {
				w.spooled.Add(int64(len(batch)))
				continue
			} else {
				w.log.Error("audit spool not writable at shutdown", "err", err)
			}
		}
		w.dropped.Add(int64(len(batch)))
		w.log.Error("audit events dropped at shutdown: database and spool unavailable", "events", len(batch))
	}
}

// Close stops the writer: Reserve refuses from now on, requests that already
// reserved get until ctx ends to commit, then everything pending is flushed
// to the database (bounded by ctx) or spooled. It returns an error when
// events had to be dropped or ctx ended first.
func (w *Writer) Close(ctx context.Context) error {
	w.closed.Store(true)
	for w.reserved.Load() > 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	before := w.dropped.Load()
	w.stopOnce.Do(func() {
		w.stopCtx.Store(ctx)
		close(w.stop)
	})
	if w.running.CompareAndSwap(false, true) {
		// Run was never started: drain here.
		w.finish(ctx)
		close(w.done)
	}
	<-w.done
	if w.spool != nil {
		w.spool.close()
	}
	w.m.unregister()
	if d := w.dropped.Load() - before; d > 0 {
		return fmt.Errorf("audit writer: %d events dropped at shutdown", d)
	}
	return ctx.Err()
}

// ensurePartitions keeps daily partitions ready ahead. A failure only costs
// speed (events land in the default partition) and is retried next time.
func (w *Writer) ensurePartitions(ctx context.Context) {
	if w.cfg.PartitionsAhead < 0 {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, w.cfg.InsertTimeout)
	defer cancel()
	// store.EnsureAuditPartitions(d) ends at today+d-1 (it counts from
	// yesterday); +1 keeps today+PartitionsAhead ready as documented.
	n, err := w.cfg.Store.EnsureAuditPartitions(pctx, w.cfg.PartitionsAhead+1)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("audit partitions not created; will retry", "err", err)
		}
		return
	}
	if n > 0 {
		w.log.Info("audit partitions created", "partitions", n)
	}
}
