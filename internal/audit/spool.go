package audit

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// The spool keeps batches that could not be written to PostgreSQL on local
// disk until they can be. It is a directory of append-only segment files,
// named by a increasing sequence number so that replay order is the order in
// which batches were spooled:
//
//	00000000000000000001.seg, 00000000000000000002.seg, ...
//
// A segment is a sequence of records, one record per batch:
//
//	uint32 big-endian payload length | uint32 big-endian CRC-32C of payload | payload
//
// where the payload is a JSON array of spooledEvent. Every append is fsync'd
// before it returns (and the directory too when the append created the file),
// so a batch that the spool accepted survives a crash of the process or the
// machine. A crash during an append leaves a torn last record: its length runs
// past the end of the file or its checksum does not match. Readers stop at the
// first such record and report how many bytes they ignored; nothing before it
// is affected, and the torn batch was never acknowledged, so its events are
// still in memory (or were lost with the process before anyone relied on them).

const (
	segmentSuffix = ".seg"
	recordHeader  = 8
	// maxRecordBytes bounds a record so that a corrupt length cannot make a
	// reader allocate gigabytes.
	maxRecordBytes = 256 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// spooledEvent is an Event with its ID, which Event's JSON form leaves out.
type spooledEvent struct {
	EventID string `json:"event_id"`
	*Event
}

// spool is the segment directory. Appends come from the flush loop and, when
// the queue is full, from Reserve; mu serialises them with rotation and
// removal. Reading a segment that is no longer the active one needs no lock.
type spool struct {
	dir      string
	maxBytes int64
	unlock   func()

	mu         sync.Mutex
	segs       []uint64 // sequence numbers on disk, ascending
	active     uint64   // segment receiving appends; 0 when none
	activeSize int64
	next       uint64
	bytes      int64 // total bytes on disk, for the gauge
}

// openSpool creates dir if needed, takes an exclusive lock on it so that two
// processes never share one spool, and lists existing segments.
func openSpool(dir string, maxBytes int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create spool dir: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &spool{dir: dir, maxBytes: maxBytes, unlock: unlock, next: 1}
	entries, err := os.ReadDir(dir)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("read spool dir: %w", err)
	}
	for _, e := range entries {
		seq, ok := parseSegmentName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		s.segs = append(s.segs, seq)
		if info, err := e.Info(); err == nil {
			s.bytes += info.Size()
		}
		if seq >= s.next {
			s.next = seq + 1
		}
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i] < s.segs[j] })
	// Segments left by a previous process are never appended to: a torn tail
	// must stay the last thing in its file.
	return s, nil
}

func (s *spool) close() {
	if s.unlock != nil {
		s.unlock()
	}
}

func segmentName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segmentSuffix) }

func parseSegmentName(name string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(base) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(base, 10, 64)
	return seq, err == nil && seq > 0
}

func (s *spool) path(seq uint64) string { return filepath.Join(s.dir, segmentName(seq)) }

// pending reports whether any segment is waiting for replay.
func (s *spool) pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.segs) > 0
}

// stats returns the number of segments and bytes on disk.
func (s *spool) stats() (segments int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.segs), s.bytes
}

// encodeRecord frames events as one record.
func encodeRecord(events []*Event) ([]byte, error) {
	rec := make([]spooledEvent, len(events))
	for i, e := range events {
		rec[i] = spooledEvent{EventID: hex.EncodeToString(e.ID[:]), Event: e}
	}
	payload, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode spool record: %w", err)
	}
	buf := make([]byte, recordHeader+len(payload))
	binary.BigEndian.PutUint32(buf[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(buf[4:8], crc32.Checksum(payload, crcTable))
	copy(buf[recordHeader:], payload)
	return buf, nil
}

// append writes events as one record to the active segment and fsyncs it.
// The file is opened for every append rather than held open so that a spool
// directory that was removed or replaced is noticed as an error instead of
// silently writing to an unlinked file.
func (s *spool) append(events []*Event) error {
	if len(events) == 0 {
		return nil
	}
	rec, err := encodeRecord(events)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active != 0 && s.activeSize+int64(len(rec)) > s.maxBytes && s.activeSize > 0 {
		s.active = 0
	}
	created := false
	seq := s.active
	if seq == 0 {
		seq = s.next
		created = true
	}
	flags := os.O_WRONLY | os.O_APPEND | os.O_CREATE
	if created {
		flags |= os.O_EXCL
	}
	f, err := os.OpenFile(s.path(seq), flags, 0o600)
	if err != nil {
		return fmt.Errorf("open spool segment: %w", err)
	}
	if _, err := f.Write(rec); err != nil {
		f.Close()
		return s.failedAppend(seq, created, fmt.Errorf("write spool segment: %w", err))
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return s.failedAppend(seq, created, fmt.Errorf("fsync spool segment: %w", err))
	}
	if err := f.Close(); err != nil {
		return s.failedAppend(seq, created, fmt.Errorf("close spool segment: %w", err))
	}
	if created {
		// The new file's directory entry must be durable too, or a crash could
		// lose the whole segment although its data was fsync'd.
		if err := syncDir(s.dir); err != nil {
			return s.failedAppend(seq, created, err)
		}
		s.next = seq + 1
		s.active = seq
		s.activeSize = 0
		s.segs = append(s.segs, seq)
	}
	s.activeSize += int64(len(rec))
	s.bytes += int64(len(rec))
	return nil
}

// failedAppend handles a write that may have left part of a record behind.
// The caller keeps the events and will retry, so the partial record must not
// be followed by good ones in the same file (a reader stops at it): the
// segment is retired, or removed when this append created it.
func (s *spool) failedAppend(seq uint64, created bool, err error) error {
	if created {
		os.Remove(s.path(seq))
		return err
	}
	s.active = 0
	return err
}

// oldest returns the oldest segment, retiring it from appends first when it
// is the active one so that replay reads a file nobody writes to.
func (s *spool) oldest() (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.segs) == 0 {
		return 0, false
	}
	seq := s.segs[0]
	if seq == s.active {
		s.active = 0
	}
	return seq, true
}

// remove deletes a replayed segment and makes the deletion durable.
func (s *spool) remove(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	info, statErr := os.Stat(s.path(seq))
	if err := os.Remove(s.path(seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove spool segment: %w", err)
	}
	if statErr == nil {
		s.bytes -= info.Size()
	}
	for i, v := range s.segs {
		if v == seq {
			s.segs = append(s.segs[:i], s.segs[i+1:]...)
			break
		}
	}
	if s.active == seq {
		s.active = 0
	}
	return syncDir(s.dir)
}

// segmentReadResult is what readSegment found in one file.
type segmentReadResult struct {
	records [][]*Event
	// ignored counts bytes after the last good record (a torn or corrupt tail).
	ignored int64
}

// readSegment reads every intact record of a segment, stopping at the first
// torn or corrupt one.
func readSegment(path string) (segmentReadResult, error) {
	var res segmentReadResult
	f, err := os.Open(path)
	if err != nil {
		return res, fmt.Errorf("open spool segment: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return res, fmt.Errorf("stat spool segment: %w", err)
	}
	r := bufio.NewReaderSize(f, 1<<20)
	var off int64
	var hdr [recordHeader]byte
	for off < info.Size() {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			break
		}
		n := int64(binary.BigEndian.Uint32(hdr[0:4]))
		sum := binary.BigEndian.Uint32(hdr[4:8])
		if n == 0 || n > maxRecordBytes || off+recordHeader+n > info.Size() {
			break
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			break
		}
		if crc32.Checksum(payload, crcTable) != sum {
			break
		}
		events, err := decodeRecord(payload)
		if err != nil {
			break
		}
		res.records = append(res.records, events)
		off += recordHeader + n
	}
	res.ignored = info.Size() - off
	return res, nil
}

func decodeRecord(payload []byte) ([]*Event, error) {
	var rec []spooledEvent
	if err := json.Unmarshal(payload, &rec); err != nil {
		return nil, err
	}
	out := make([]*Event, 0, len(rec))
	for _, se := range rec {
		if se.Event == nil {
			return nil, errors.New("empty event")
		}
		id, err := hex.DecodeString(se.EventID)
		if err != nil || len(id) != 16 {
			return nil, fmt.Errorf("bad event id %q", se.EventID)
		}
		copy(se.Event.ID[:], id)
		out = append(out, se.Event)
	}
	return out, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open spool dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync spool dir: %w", err)
	}
	return nil
}
