package treekem_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/vectortest"
	"github.com/microchat/e2ee/treekem"
)

// loadOptional decodes a vector file if the vectors are present, for fuzz
// seeds; unlike vectortest.Load it never skips or fails.
func loadOptional[T any](name string) []T {
	dir := vectortest.Dir()
	if dir == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil
	}
	var out []T
	if json.Unmarshal(data, &out) != nil {
		return nil
	}
	return out
}

// fuzzSuite maps any uint16 to a supported suite.
func fuzzSuite(s uint16) hpke.CipherSuite {
	suites := hpke.CipherSuites()
	if cs := hpke.CipherSuite(s); cs.Supported() {
		return cs
	}
	return suites[int(s)%len(suites)]
}

func FuzzParseTree(f *testing.F) {
	for _, v := range loadOptional[treeValidationVector]("tree-validation.json") {
		f.Add(uint16(v.CipherSuite), []byte(v.Tree))
	}
	for _, v := range loadOptional[treeKEMVector]("treekem.json") {
		f.Add(uint16(v.CipherSuite), []byte(v.RatchetTree))
	}
	for _, v := range loadOptional[treeOperationsVector]("tree-operations.json") {
		f.Add(uint16(v.CipherSuite), []byte(v.TreeAfter))
	}
	f.Fuzz(func(t *testing.T, suite uint16, data []byte) {
		cs := fuzzSuite(suite)
		tree, err := treekem.ParseTree(cs, data)
		if err != nil {
			if tree != nil {
				t.Fatal("non-nil tree with an error")
			}
			if !errors.Is(err, treekem.ErrMalformed) && !errors.Is(err, treekem.ErrInvalidTree) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !bytes.Equal(tree.Bytes(), data) {
			t.Fatal("tree does not re-encode to the same bytes")
		}
		for n := range tree.Width() {
			tree.Resolution(treekem.NodeIndex(n))
		}
		for l := range tree.LeafCount() {
			tree.FilteredDirectPath(treekem.LeafIndex(l))
		}
		tree.TreeHash()
		err = tree.Validate(&treekem.ValidateOptions{GroupID: []byte("g"), Workers: 1})
		if err != nil && !errors.Is(err, treekem.ErrInvalidTree) {
			t.Fatalf("Validate error %v does not match ErrInvalidTree", err)
		}
		c := tree.Clone()
		if l := c.LeftmostBlankLeaf(); l < treekem.LeafIndex(c.LeafCount()) {
			c.RemoveLeaf(l) // must fail cleanly
		}
		for l := range tree.Leaves() {
			if err := c.RemoveLeaf(l); err != nil {
				t.Fatalf("removing leaf %d: %v", l, err)
			}
			break
		}
	})
}

func FuzzParseLeafNode(f *testing.F) {
	for _, v := range loadOptional[treeValidationVector]("tree-validation.json") {
		if tree, err := treekem.ParseTree(v.CipherSuite, v.Tree); err == nil {
			for _, l := range tree.Leaves() {
				f.Add(uint16(v.CipherSuite), l.Bytes())
				break
			}
		}
	}
	f.Fuzz(func(t *testing.T, suite uint16, data []byte) {
		leaf, err := treekem.ParseLeafNode(data)
		if err != nil {
			if leaf != nil {
				t.Fatal("non-nil leaf with an error")
			}
			if !errors.Is(err, treekem.ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !bytes.Equal(leaf.Bytes(), data) {
			t.Fatal("leaf node does not re-encode to the same bytes")
		}
		// A key that does not decode for the suite is malformed; any other
		// failure is a bad signature.
		if err := leaf.VerifySignature(fuzzSuite(suite), []byte("g"), 1); err != nil && !errors.Is(err, treekem.ErrInvalidSignature) && !errors.Is(err, treekem.ErrMalformed) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func FuzzParseUpdatePath(f *testing.F) {
	for _, v := range loadOptional[treeKEMVector]("treekem.json") {
		for _, up := range v.UpdatePaths {
			f.Add([]byte(up.UpdatePath))
			break
		}
	}
	g := newGroup(f, hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, 3)
	g.commitLocal(f, 0)
	base := g.tree
	base.TreeHash() // fill the cache before clones share it
	f.Fuzz(func(t *testing.T, data []byte) {
		path, err := treekem.ParseUpdatePath(data)
		if err != nil {
			if path != nil {
				t.Fatal("non-nil path with an error")
			}
			if !errors.Is(err, treekem.ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !bytes.Equal(path.Bytes(), data) {
			t.Fatal("update path does not re-encode to the same bytes")
		}
		tree := base.Clone()
		before := tree.TreeHash()
		if err := tree.MergeUpdatePath(1, path, nil, &treekem.ValidateOptions{GroupID: testGroupID}); err == nil {
			t.Fatal("merged a forged update path")
		} else if !errors.Is(err, treekem.ErrInvalidUpdatePath) {
			t.Fatalf("unexpected error %v", err)
		}
		if !bytes.Equal(tree.TreeHash(), before) {
			t.Fatal("a rejected update path changed the tree")
		}
	})
}

// TestFuzzSeeds checks that the committed fuzz seeds exist (so the fuzz
// targets never run on an empty corpus when the vectors are absent) and,
// with TREEKEM_WRITE_SEEDS=1, regenerates them.
func TestFuzzSeeds(t *testing.T) {
	if os.Getenv("TREEKEM_WRITE_SEEDS") == "1" {
		writeSeeds(t)
	}
	for _, target := range []string{"FuzzParseTree", "FuzzParseLeafNode", "FuzzParseUpdatePath"} {
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
		if err != nil || len(files) == 0 {
			t.Errorf("no committed seeds for %s", target)
		}
	}
}

func writeSeeds(t *testing.T) {
	write := func(target, name string, args ...any) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		buf.WriteString("go test fuzz v1\n")
		for _, a := range args {
			switch a := a.(type) {
			case uint16:
				fmt.Fprintf(&buf, "uint16(%d)\n", a)
			case []byte:
				fmt.Fprintf(&buf, "[]byte(%q)\n", a)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, cs := range []hpke.CipherSuite{1, 2} {
		g := newGroup(t, cs, 3)
		g.commit(t, 0, nil, nil, nil)
		g.add(t, newMember(t, cs, "unmerged"))
		name := fmt.Sprintf("suite-%d", cs)
		write("FuzzParseTree", name, uint16(cs), g.tree.Bytes())
		write("FuzzParseLeafNode", name, uint16(cs), g.tree.Leaf(0).Bytes())
		committer := g.tree.Clone()
		p, err := committer.GenerateUpdatePath(1, nil, g.members[1].signer, testGroupID, nil)
		if err != nil {
			t.Fatal(err)
		}
		up, err := p.Encrypt([]byte("context"))
		if err != nil {
			t.Fatal(err)
		}
		write("FuzzParseUpdatePath", name, up.Bytes())
	}
}
