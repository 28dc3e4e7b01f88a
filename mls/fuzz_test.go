package mls

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/microchat/e2ee/internal/vectortest"
)

// addSeeds adds the committed seeds under testdata/fuzz/seeds/<kind>* and,
// when the official vectors are present, the messages of messages.json. It
// fails if no committed seed loads, so a moved folder cannot silently leave
// a fuzzer unseeded.
func addSeeds(f *testing.F, kind string) {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "fuzz", "seeds", kind+"-*"))
	if err != nil {
		f.Fatal(err)
	}
	if len(paths) == 0 {
		f.Fatalf("no committed fuzz seeds for %s", kind)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	if vectortest.Dir() == "" {
		return
	}
	for _, v := range vectortest.Load[messagesVector](f, "messages.json")[:20] {
		for _, m := range [][]byte{v.MLSWelcome, v.MLSGroupInfo, v.MLSKeyPackage, v.PublicMessageApplication,
			v.PublicMessageProposal, v.PublicMessageCommit, v.PrivateMessage} {
			f.Add([]byte(m))
		}
	}
}

// checkParse is the common property of every parser fuzz target: no panic,
// a nil value and an ErrMalformed error on failure, and a byte-identical
// re-encoding on success.
func checkParse[T any](t *testing.T, data []byte, parse func([]byte) (*T, error), enc func(*T) ([]byte, error)) {
	v, err := parse(data)
	if err != nil {
		if v != nil {
			t.Fatal("non-nil value with an error")
		}
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error outside the known set: %v", err)
		}
		return
	}
	out, err := enc(v)
	if err != nil {
		t.Fatalf("re-encoding a parsed value: %v", err)
	}
	if !bytes.Equal(out, data) {
		t.Fatalf("re-encoding differs:\n got %x\nwant %x", out, data)
	}
}

func FuzzParseMessage(f *testing.F) {
	addSeeds(f, "message")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, data, ParseMessage, (*MLSMessage).Bytes)
	})
}

// stripEnvelope returns the body of an MLSMessage of wire format wf, or the
// input unchanged, so that the envelope seeds also exercise the bare parsers.
func stripEnvelope(data []byte, wf WireFormat) []byte {
	if len(data) >= 4 && data[0] == 0 && data[1] == 1 && data[2] == 0 && data[3] == byte(wf) {
		return data[4:]
	}
	return data
}

func FuzzParseKeyPackage(f *testing.F) {
	addSeeds(f, "message")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, stripEnvelope(data, WireFormatKeyPackage), ParseKeyPackage, (*KeyPackage).Bytes)
	})
}

func FuzzParseWelcome(f *testing.F) {
	addSeeds(f, "message")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, stripEnvelope(data, WireFormatWelcome), ParseWelcome, (*Welcome).Bytes)
	})
}

func FuzzParseGroupInfo(f *testing.F) {
	addSeeds(f, "message")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, stripEnvelope(data, WireFormatGroupInfo), ParseGroupInfo, (*GroupInfo).Bytes)
	})
}

func FuzzParseProposal(f *testing.F) {
	addSeeds(f, "proposal")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, data, ParseProposal, (*Proposal).Bytes)
	})
}

func FuzzParseCommit(f *testing.F) {
	addSeeds(f, "commit")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, data, ParseCommit, (*Commit).Bytes)
	})
}

// groupSnapshot captures what must not change when a message is rejected.
type groupSnapshot struct {
	epoch     uint64
	auth      []byte
	treeHash  []byte
	proposals int
	active    bool
}

func snapshot(g *Group) groupSnapshot {
	return groupSnapshot{g.Epoch(), bytes.Clone(g.EpochAuthenticator()), bytes.Clone(g.TreeHash()), len(g.state.proposals), g.Active()}
}

func (s groupSnapshot) equal(o groupSnapshot) bool {
	return s.epoch == o.epoch && bytes.Equal(s.auth, o.auth) && bytes.Equal(s.treeHash, o.treeHash) &&
		s.proposals == o.proposals && s.active == o.active
}

// FuzzProcess feeds arbitrary messages to a real three-member group. Every
// rejection must come with an error of the known set and leave the group
// as it was; nothing may panic.
func FuzzProcess(f *testing.F) {
	addSeeds(f, "message")
	fx := newFuzzGroup(f)
	for _, m := range fx.seeds {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g := fx.fresh(t)
		msg, err := ParseMessage(data)
		if err != nil {
			return
		}
		before := snapshot(g)
		res, err := g.Process(msg)
		if err != nil {
			if res != nil {
				t.Fatal("non-nil result with an error")
			}
			if !knownError(err) {
				t.Fatalf("error outside the known set: %v", err)
			}
			if !snapshot(g).equal(before) {
				t.Fatal("a rejected message changed the group")
			}
			return
		}
		fx.mutated = true
		if res.Commit != nil {
			if err := g.Merge(res.Commit); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// knownError reports whether err is one of the errors callers can match.
func knownError(err error) bool {
	var ve *ValidationError
	for _, target := range []error{ErrMalformed, ErrUnsupported, ErrInvalidSignature, ErrDecryption, ErrWrongGroup,
		ErrWrongEpoch, ErrNotFound, ErrKeyUsed, ErrTooFarAhead, ErrNotMember, ErrInactive, ErrReInitialized, ErrProposalCacheFull} {
		if errors.Is(err, target) {
			return true
		}
	}
	return errors.As(err, &ve)
}
