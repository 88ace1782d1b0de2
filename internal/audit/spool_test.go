package audit

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSpoolReadStopsAtTornOrCorruptRecord(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sp, err := openSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	ev := func(id byte) []*Event { return []*Event{{ID: [16]byte{id}, RequestID: "r", Decision: DecisionAllow}} }
	for i := byte(1); i <= 3; i++ {
		if err := sp.append(ev(i)); err != nil {
			t.Fatal(err)
		}
	}
	seq, _ := sp.oldest()
	path := sp.path(seq)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := readSegment(path)
	if err != nil || len(res.records) != 3 || res.ignored != 0 || res.records[2][0].ID[0] != 3 {
		t.Fatalf("intact segment: %+v, %v", res, err)
	}
	recLen := len(good) / 3

	cases := map[string][]byte{
		"torn header":  append(append([]byte{}, good...), 0, 0),
		"torn payload": good[:len(good)-5],
		"bad checksum": func() []byte {
			b := append([]byte{}, good...)
			b[recLen+recordHeader+3] ^= 0xff // inside the second record's payload
			return b
		}(),
		"huge length": append(append([]byte{}, good...), 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0),
	}
	want := map[string]int{"torn header": 3, "torn payload": 2, "bad checksum": 1, "huge length": 3}
	for name, b := range cases {
		p := filepath.Join(t.TempDir(), segmentName(1))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := readSegment(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(res.records) != want[name] || res.ignored == 0 {
			t.Errorf("%s: %d records, %d bytes ignored; want %d records and some ignored", name, len(res.records), res.ignored, want[name])
		}
	}
}

func TestSpoolRotatesAndResumesNumbering(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sp, err := openSpool(dir, 200)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := sp.append([]*Event{{RequestID: "a-fairly-long-request-id-to-fill-the-segment", Decision: DecisionAllow}}); err != nil {
			t.Fatal(err)
		}
	}
	n, _ := sp.stats()
	sp.close()
	if n < 2 {
		t.Fatalf("%d segments, want rotation", n)
	}
	// A new process never appends to old segments, and numbers after them.
	sp2, err := openSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer sp2.close()
	if err := sp2.append([]*Event{{Decision: DecisionAllow}}); err != nil {
		t.Fatal(err)
	}
	if m, _ := sp2.stats(); m != n+1 {
		t.Fatalf("%d segments after reopen and append, want %d", m, n+1)
	}
}

func TestParseShadow(t *testing.T) {
	t.Parallel()
	sh, ok := ParseShadow("deny:forbidden:new-export,other (changed)")
	if !ok || sh.Effect != "deny" || sh.Reason != "forbidden" || len(sh.Rules) != 2 || !sh.Changed {
		t.Fatalf("%+v %v", sh, ok)
	}
	if _, ok := ParseShadow(""); ok {
		t.Fatal("empty shadow parsed")
	}
}
