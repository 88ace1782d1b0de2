package audit

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Sentinel errors of the Writer.
var (
	// ErrUnavailable is returned by Reserve and Record when an event could be
	// neither queued nor spooled. The proxy must refuse the request with 503
	// rather than serve it unaudited.
	ErrUnavailable = errors.New("audit unavailable: queue full and spool not writable")
	// ErrClosed is returned by Reserve after Close; it wraps ErrUnavailable.
	ErrClosed = fmt.Errorf("%w: writer closed", ErrUnavailable)
)

// Store is the storage the Writer needs. internal/store implements it.
type Store interface {
	// InsertAuditEvents stores events and reports how many it inserted. It
	// must be idempotent on (time, event id): a batch whose commit succeeded
	// although the caller saw an error is spooled and replayed, and a crash
	// between a replay and the removal of its segment replays it again; events
	// already stored are skipped, not duplicated. (internal/store: one COPY,
	// falling back to COPY into a temporary table + INSERT … ON CONFLICT DO
	// NOTHING when the COPY hits an existing key.)
	InsertAuditEvents(ctx context.Context, events []*Event) (inserted int64, err error)
	// EnsureAuditPartitions creates daily partitions from yesterday to
	// daysAhead days ahead and reports how many it created.
	EnsureAuditPartitions(ctx context.Context, daysAhead int) (created int, err error)
}

// WriterConfig configures NewWriter. Zero values take the defaults shown.
type WriterConfig struct {
	// Store receives the events. Required.
	Store Store
	// QueueSize bounds the events held in memory between Reserve and their
	// insert (default 65536). When it is full, Reserve moves the oldest
	// queued batch to the spool synchronously; when that fails too, Reserve
	// returns ErrUnavailable.
	QueueSize int
	// BatchSize is the largest batch inserted at once (default 2000); a full
	// batch is flushed at once. Larger batches insert faster (docs/audit.md)
	// but hold the flush loop longer per statement.
	BatchSize int
	// FlushInterval is the longest an event waits in the queue before it is
	// flushed (default 250ms; SPEC: queryable within 2 s).
	FlushInterval time.Duration
	// SpoolDir holds batches that could not be inserted while the database
	// is unreachable. Empty disables spooling: an outage then fills the queue
	// and Reserve refuses requests once it is full.
	SpoolDir string
	// SegmentBytes is the size at which a spool segment is closed and a new
	// one started (default 8 MiB). Replay works a segment at a time.
	SegmentBytes int64
	// Replica is written into events that do not name their replica.
	Replica string
	// Logger receives outage, spool and replay messages (default: discard).
	Logger *slog.Logger
	// Metrics, when set, registers the writer's metrics (okproxy_audit_*).
	Metrics prometheus.Registerer
	// Now is the clock for event times left zero (default time.Now).
	Now func() time.Time
	// InsertTimeout bounds one insert or replay statement (default 10s).
	InsertTimeout time.Duration
	// RetryInterval is how long after a failed insert the writer keeps
	// spooling before it tries the database again (default 1s).
	RetryInterval time.Duration
	// PartitionsAhead: daily partitions are kept ready from yesterday
	// through today + PartitionsAhead days (default 7); PartitionEvery is how
	// often that is checked (default 1h). Negative disables it.
	PartitionsAhead int
	PartitionEvery  time.Duration
	// RefusalBuffer bounds events committed without a reservation (the 503
	// events of refused requests) that wait for room (default QueueSize/16,
	// at least 256). Beyond it such events are counted as dropped.
	RefusalBuffer int
}

func (c *WriterConfig) setDefaults() {
	c.QueueSize = cmp.Or(c.QueueSize, 65536)
	c.BatchSize = cmp.Or(c.BatchSize, 2000)
	c.FlushInterval = cmp.Or(c.FlushInterval, 250*time.Millisecond)
	c.SegmentBytes = cmp.Or(c.SegmentBytes, 8<<20)
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.InsertTimeout = cmp.Or(c.InsertTimeout, 10*time.Second)
	c.RetryInterval = cmp.Or(c.RetryInterval, time.Second)
	c.PartitionsAhead = cmp.Or(c.PartitionsAhead, 7)
	c.PartitionEvery = cmp.Or(c.PartitionEvery, time.Hour)
	c.RefusalBuffer = cmp.Or(c.RefusalBuffer, max(c.QueueSize/16, 256))
}

func (c *WriterConfig) validate() error {
	switch {
	case c.Store == nil:
		return errors.New("audit writer: no Store")
	case c.QueueSize < 1 || c.BatchSize < 1:
		return errors.New("audit writer: QueueSize and BatchSize must be positive")
	case c.BatchSize > c.QueueSize:
		return fmt.Errorf("audit writer: BatchSize %d exceeds QueueSize %d", c.BatchSize, c.QueueSize)
	case c.FlushInterval < 0 || c.InsertTimeout < 0 || c.RetryInterval < 0:
		return errors.New("audit writer: negative interval")
	}
	return nil
}

// Writer is the asynchronous, batched, lossless audit writer. It implements
// Sink. Events flow: Commit → bounded queue → batch → COPY into PostgreSQL;
// while the database is unreachable batches go to the spool and are replayed,
// oldest first, once it is back.
//
// Ordering: while any spooled segment is waiting, new batches are appended to
// the spool behind it rather than inserted directly, so the database receives
// events in the order they were committed. The one exception is a spill by
// Reserve when the queue is full, which can overtake the single batch the
// flush loop holds at that moment. Either way every event is stored exactly
// once: inserts are idempotent on (time, event_id).
type Writer struct {
	cfg   WriterConfig
	log   *slog.Logger
	spool *spool // nil without SpoolDir
	m     *metrics

	queue    chan *Event
	free     atomic.Int64 // queue slots not reserved and not holding an event
	reserved atomic.Int64 // successful Reserves not yet committed

	mu       sync.Mutex // guards held and refusals
	held     []*Event   // events from a failed spill; they still hold their slots
	refusals []*Event   // events committed without a reservation

	spillMu      sync.Mutex
	spillRetryAt atomic.Int64 // unix nanos before which Reserve does not retry a failed spill

	closed   atomic.Bool // Reserve refuses
	finished atomic.Bool // the flush loop has done its final drain
	running  atomic.Bool
	stopOnce sync.Once
	stop     chan struct{}
	stopCtx  atomic.Value // context.Context given to Close
	done     chan struct{}

	written, spooled, replayed, duplicates, dropped, refused atomic.Int64

	// Owned by the flush loop.
	pending   []*Event // a batch that went nowhere; retried before anything else
	retryAt   time.Time
	dbDown    bool
	replayPos map[uint64]int // records of a segment already replayed
}

// NewWriter validates cfg, opens the spool directory (taking its lock) and
// registers metrics. Call Run to start writing and Close to stop.
func NewWriter(cfg WriterConfig) (*Writer, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	w := &Writer{
		cfg:       cfg,
		log:       cfg.Logger,
		queue:     make(chan *Event, cfg.QueueSize),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		replayPos: map[uint64]int{},
	}
	w.free.Store(int64(cfg.QueueSize))
	if cfg.SpoolDir != "" {
		sp, err := openSpool(cfg.SpoolDir, cfg.SegmentBytes)
		if err != nil {
			return nil, fmt.Errorf("audit writer: %w", err)
		}
		w.spool = sp
		if n, b := sp.stats(); n > 0 {
			w.log.Info("audit spool holds segments from an earlier run; replaying them first",
				"spool_dir", cfg.SpoolDir, "segments", n, "bytes", b)
		}
	}
	m, err := newMetrics(w, cfg.Metrics)
	if err != nil {
		if w.spool != nil {
			w.spool.close()
		}
		return nil, fmt.Errorf("audit writer: register metrics: %w", err)
	}
	w.m = m
	return w, nil
}

var _ Sink = (*Writer)(nil)

// Reserve claims a queue slot for the event of a request about to be
// forwarded. When the queue is full it spools the oldest queued batch
// synchronously to make room. When neither works it counts a refusal and
// returns ErrUnavailable; the proxy then answers 503 and passes the 503's
// event to Commit, which keeps it until there is room.
func (w *Writer) Reserve() error {
	if w.closed.Load() {
		w.refused.Add(1)
		return ErrClosed
	}
	// A spill frees up to BatchSize slots, but concurrent Reserves may take
	// them first: retry a few times before refusing.
	for range 4 {
		if w.claim() {
			return nil
		}
		if !w.spill() {
			break
		}
	}
	w.refused.Add(1)
	return ErrUnavailable
}

func (w *Writer) claim() bool {
	for {
		f := w.free.Load()
		if f <= 0 {
			return false
		}
		if w.free.CompareAndSwap(f, f-1) {
			w.reserved.Add(1)
			return true
		}
	}
}

// spill moves the oldest queued batch to the spool to free slots.
func (w *Writer) spill() bool {
	if w.spool == nil || time.Now().UnixNano() < w.spillRetryAt.Load() {
		return false
	}
	w.spillMu.Lock()
	defer w.spillMu.Unlock()
	if w.finished.Load() {
		return false
	}
	if w.free.Load() > 0 {
		return true // another Reserve made room meanwhile
	}
	batch := make([]*Event, 0, w.cfg.BatchSize)
	for len(batch) < w.cfg.BatchSize {
		select {
		case e := <-w.queue:
			batch = append(batch, e)
			continue
		default:
		}
		break
	}
	if len(batch) == 0 {
		return false // every slot is reserved by a request still in flight
	}
	if err := w.spool.append(batch); err != nil {
		// The events keep their slots and wait in held for the flush loop.
		w.mu.Lock()
		w.held = append(w.held, batch...)
		w.mu.Unlock()
		w.spillRetryAt.Store(time.Now().Add(100 * time.Millisecond).UnixNano())
		w.log.Error("audit queue full and spool not writable: refusing requests", "events", len(batch), "err", err)
		return false
	}
	w.spooled.Add(int64(len(batch)))
	w.free.Add(int64(len(batch)))
	return true
}

// Commit hands over the finished event of a request. It never blocks or
// fails. Called without a reservation — for the 503 event of a request that
// Reserve or Record refused — it keeps the event in a bounded buffer
// (RefusalBuffer) that is written as soon as there is room.
//
// It sets a random ID when e has none, the time when it is zero (truncated
// to microseconds, what PostgreSQL stores, so that a replay matches the
// stored row) and the replica when it is empty, and replaces bytes that
// PostgreSQL's text cannot hold (invalid UTF-8, NUL) with U+FFFD. The
// writer owns e afterwards.
func (w *Writer) Commit(e *Event) {
	w.prepare(e)
	if w.finished.Load() {
		w.commitLate(e)
		return
	}
	if w.takeReservation() {
		select {
		case w.queue <- e:
			if w.finished.Load() {
				// The final drain may have missed it; whoever receives it now
				// writes it.
				w.drainLate()
			}
			return
		default:
			// Cannot happen while slots are accounted correctly; keep the
			// event rather than lose it.
		}
	}
	w.mu.Lock()
	if len(w.refusals) < w.cfg.RefusalBuffer {
		w.refusals = append(w.refusals, e)
		w.mu.Unlock()
		if w.finished.Load() {
			w.drainLate()
		}
		return
	}
	w.mu.Unlock()
	w.dropped.Add(1)
	w.log.Error("audit event dropped: refusal buffer full", "request_id", e.RequestID)
}

// Record is Reserve followed by Commit, for responses the proxy makes
// itself. When Reserve fails, e is not kept and ErrUnavailable is returned:
// the proxy then answers 503 instead and commits that answer's event, so
// the stored status is the one the client saw.
func (w *Writer) Record(e *Event) error {
	if err := w.Reserve(); err != nil {
		return err
	}
	w.Commit(e)
	return nil
}

func (w *Writer) takeReservation() bool {
	for {
		r := w.reserved.Load()
		if r <= 0 {
			return false
		}
		if w.reserved.CompareAndSwap(r, r-1) {
			return true
		}
	}
}

func (w *Writer) prepare(e *Event) {
	e.storable()
	if e.ID == ([16]byte{}) {
		e.ID = NewID()
	}
	if e.Time.IsZero() {
		e.Time = w.cfg.Now()
	}
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	if e.Replica == "" {
		e.Replica = w.cfg.Replica
	}
}

// NewID returns a random version-4 UUID for Event.ID.
func NewID() [16]byte {
	var id [16]byte
	rand.Read(id[:])
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id
}

// commitLate writes an event that arrived after the final drain straight to
// the spool: after Close nobody else will.
func (w *Writer) commitLate(e *Event) {
	if w.spool != nil {
		if err := w.spool.append([]*Event{e}); err == nil {
			w.spooled.Add(1)
			return
		}
	}
	w.dropped.Add(1)
	w.log.Error("audit event dropped: committed after close and not spoolable", "request_id", e.RequestID)
}

func (w *Writer) drainLate() {
	w.mu.Lock()
	late := append(w.held, w.refusals...)
	w.held, w.refusals = nil, nil
	w.mu.Unlock()
	for _, e := range late {
		w.commitLate(e)
	}
	for {
		select {
		case e := <-w.queue:
			w.commitLate(e)
		default:
			return
		}
	}
}

// Stats is a snapshot of the writer's counters.
type Stats struct {
	Queued        int   // events in memory waiting to be written
	Written       int64 // events inserted directly
	Spooled       int64 // events written to the spool
	Replayed      int64 // events inserted from the spool
	Duplicates    int64 // replayed events that were already stored (skipped)
	Dropped       int64 // events lost; must stay 0
	Refused       int64 // Reserve calls that returned ErrUnavailable (503s)
	SpoolSegments int
	SpoolBytes    int64
}

// Stats returns the current counters.
func (w *Writer) Stats() Stats {
	s := Stats{
		Queued:     w.depth(),
		Written:    w.written.Load(),
		Spooled:    w.spooled.Load(),
		Replayed:   w.replayed.Load(),
		Duplicates: w.duplicates.Load(),
		Dropped:    w.dropped.Load(),
		Refused:    w.refused.Load(),
	}
	if w.spool != nil {
		s.SpoolSegments, s.SpoolBytes = w.spool.stats()
	}
	return s
}

func (w *Writer) depth() int {
	w.mu.Lock()
	n := len(w.held) + len(w.refusals)
	w.mu.Unlock()
	return n + len(w.queue)
}
