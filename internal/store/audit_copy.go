package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/okproxy/okproxy/internal/audit"
)

// The audit rows go to PostgreSQL in COPY's binary format, encoded here
// rather than through pgx's CopyFrom: every request writes one row, and
// CopyFrom boxes each of the 23 values in an interface and looks up an
// encode plan for it (about 4.5 µs and 25 allocations per event on the
// development VM, inside the serving process), and first asks the server to
// describe the table (a round trip per batch). The column types are fixed by
// the migrations; the round-trip tests (TestAuditCopyRoundTrip and the
// writer's) check every field.

// pgEpochMicros is PostgreSQL's timestamp epoch, 2000-01-01 UTC, in Unix
// microseconds.
const pgEpochMicros = 946684800 * 1_000_000

const textOID = 25

var be = binary.BigEndian

func copySQL(table string) string {
	return "COPY " + table + " (" + strings.Join(auditColumns, ", ") + ") FROM STDIN (FORMAT binary)"
}

// encodeAuditCopy appends events to buf as one COPY binary stream (header,
// one tuple per event in auditColumns order, trailer).
func encodeAuditCopy(buf []byte, events []*audit.Event) []byte {
	buf = append(buf, "PGCOPY\n\xff\r\n\x00"...)
	buf = be.AppendUint32(buf, 0) // flags: no OIDs
	buf = be.AppendUint32(buf, 0) // header extension length
	for _, e := range events {
		buf = be.AppendUint16(buf, uint16(len(auditColumns)))
		buf = appendInt8(buf, e.Time.UnixMicro()-pgEpochMicros) // time timestamptz
		buf = be.AppendUint32(buf, 16)                          // event_id uuid
		buf = append(buf, e.ID[:]...)
		buf = appendText(buf, e.RequestID)
		buf = appendText(buf, e.Replica)
		buf = appendText(buf, e.Method)
		buf = appendText(buf, e.Host)
		buf = appendText(buf, e.Path)
		buf = be.AppendUint32(buf, 4) // status int4
		buf = be.AppendUint32(buf, uint32(int32(e.Status)))
		buf = appendText(buf, e.Decision)
		buf = appendText(buf, e.Reason)
		buf = appendInt8(buf, e.PolicyVersion) // policy_version int8
		buf = appendTextArray(buf, e.Rules)
		buf = appendText(buf, e.Rule)
		buf = appendText(buf, e.Shadow)
		buf = appendText(buf, e.Subject)
		buf = appendText(buf, e.UserID)
		buf = appendText(buf, e.Email)
		buf = appendTextArray(buf, e.Groups)
		buf = appendText(buf, e.ClientIP)
		buf = appendText(buf, e.UserAgent)
		buf = appendText(buf, e.JTI)
		buf = appendText(buf, e.ClientID)
		buf = be.AppendUint32(buf, 8) // latency_ms float8
		buf = be.AppendUint64(buf, math.Float64bits(e.LatencyMS))
	}
	return be.AppendUint16(buf, 0xffff) // trailer: -1
}

func appendInt8(buf []byte, v int64) []byte {
	buf = be.AppendUint32(buf, 8)
	return be.AppendUint64(buf, uint64(v))
}

func appendText(buf []byte, s string) []byte {
	buf = be.AppendUint32(buf, uint32(len(s)))
	return append(buf, s...)
}

// appendTextArray writes a one-dimensional text[] (zero dimensions when
// empty: what '{}' is), never NULL.
func appendTextArray(buf []byte, l []string) []byte {
	size := 12
	if len(l) > 0 {
		size += 8
		for _, s := range l {
			size += 4 + len(s)
		}
	}
	buf = be.AppendUint32(buf, uint32(size))
	if len(l) == 0 {
		buf = be.AppendUint32(buf, 0) // ndim
		buf = be.AppendUint32(buf, 0) // no NULLs
		return be.AppendUint32(buf, textOID)
	}
	buf = be.AppendUint32(buf, 1)
	buf = be.AppendUint32(buf, 0)
	buf = be.AppendUint32(buf, textOID)
	buf = be.AppendUint32(buf, uint32(len(l))) // dimension length
	buf = be.AppendUint32(buf, 1)              // lower bound
	for _, s := range l {
		buf = appendText(buf, s)
	}
	return buf
}

// copyAudit runs one binary COPY of events into table on conn.
func copyAudit(ctx context.Context, conn *pgconn.PgConn, table string, events []*audit.Event) (int64, error) {
	buf := encodeAuditCopy(make([]byte, 0, 64+len(events)*400), events)
	tag, err := conn.CopyFrom(ctx, bytes.NewReader(buf), copySQL(table))
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}
