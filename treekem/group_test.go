package treekem_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/treekem"
)

// update is an Update proposal: a new leaf node for a member and its new
// HPKE key.
type update struct {
	leaf   *treekem.LeafNode
	encKey *hpke.PrivateKey
}

func (g *group) newUpdate(t *testing.T, l treekem.LeafIndex) update {
	t.Helper()
	m := g.members[l]
	enc, err := g.cs.GenerateKeyPair()
	require.NoError(t, err)
	leaf := *g.tree.Leaf(l)
	leaf.EncryptionKey = enc.PublicKey()
	leaf.Source = treekem.SourceUpdate
	leaf.Lifetime = treekem.Lifetime{}
	leaf.ParentHash = nil
	require.NoError(t, leaf.Sign(g.cs, m.signer, testGroupID, l))
	return update{leaf: &leaf, encKey: enc}
}

// applyProposals applies updates, removes and adds in the order of RFC
// 9420, Section 12.3 and returns the leaves of the added members.
func (g *group) applyProposals(t *testing.T, tree *treekem.Tree, updates map[treekem.LeafIndex]update, removes []treekem.LeafIndex, adds []*member) []treekem.LeafIndex {
	t.Helper()
	opts := g.opts()
	opts.Now = vectorNow
	for _, l := range slices.Sorted(maps.Keys(updates)) {
		require.NoError(t, tree.ValidateLeafNode(updates[l].leaf, treekem.SourceUpdate, l, opts), "update of leaf %d", l)
		require.NoError(t, tree.UpdateLeaf(l, updates[l].leaf))
	}
	for _, l := range removes {
		require.NoError(t, tree.RemoveLeaf(l))
	}
	var added []treekem.LeafIndex
	for _, m := range adds {
		require.NoError(t, tree.ValidateLeafNode(m.leaf, treekem.SourceKeyPackage, 0, opts), "add")
		l, err := tree.AddLeaf(m.leaf)
		require.NoError(t, err)
		added = append(added, l)
	}
	return added
}

// commit runs a whole commit with a path from sender: the committer applies
// the proposals and generates the path, every other remaining member
// merges and decrypts it, and each added member imports its path secret
// from the Welcome. All must agree on the tree hash and commit secret.
func (g *group) commit(t *testing.T, sender treekem.LeafIndex, updates map[treekem.LeafIndex]update, removes []treekem.LeafIndex, adds []*member) {
	t.Helper()
	cs := g.cs
	committer := g.tree.Clone()
	added := g.applyProposals(t, committer, updates, removes, adds)
	pending, err := committer.GenerateUpdatePath(sender, nil, g.members[sender].signer, testGroupID, added)
	require.NoError(t, err)
	defer pending.Erase()
	gc := groupContext(cs, testGroupID, g.epoch+1, committer.TreeHash(), []byte("cth"))
	up, err := pending.Encrypt(gc)
	require.NoError(t, err)
	if up, err = treekem.ParseUpdatePath(up.Bytes()); err != nil {
		t.Fatal(err)
	}
	require.NoError(t, committer.Validate(g.opts()), "epoch %d: committer's tree", g.epoch+1)
	checkTreeConsistency(t, committer)

	next := map[treekem.LeafIndex]*member{}
	for l, m := range g.members {
		if l == sender || slices.Contains(removes, l) {
			continue
		}
		recv := g.tree.Clone()
		g.applyProposals(t, recv, updates, removes, adds)
		require.NoError(t, recv.MergeUpdatePath(sender, up, added, g.opts()), "leaf %d: MergeUpdatePath", l)
		require.Equal(t, committer.TreeHash(), recv.TreeHash(), "leaf")
		priv := m.private
		if u, ok := updates[l]; ok {
			priv = treekem.NewPrivateKeys(cs, l, u.encKey)
		}
		priv = priv.Prune(recv)
		keys, secret, err := recv.DecryptUpdatePath(priv, sender, up, gc, added)
		require.NoError(t, err, "epoch %d: leaf %d: DecryptUpdatePath", g.epoch+1, l)
		require.Equal(t, pending.CommitSecret(), secret, "leaf")
		require.NoError(t, keys.Verify(recv), "leaf %d", l)
		m.private = keys
		next[l] = m
	}
	sm := g.members[sender]
	sm.private = pending.PrivateKeys()
	next[sender] = sm
	for i, l := range added {
		m := adds[i]
		ps, ok := pending.PathSecret(l)
		if !ok {
			t.Fatalf("no path secret for joiner %d", l)
		}
		keys, secret, err := committer.ImportPathSecret(treekem.NewPrivateKeys(cs, l, m.encKey), sender, ps)
		require.NoError(t, err, "joiner %d", l)
		require.Equal(t, pending.CommitSecret(), secret, "joiner")
		m.private = keys
		next[l] = m
	}
	g.tree, g.members = committer, next
	g.epoch++
}

// checkTreeConsistency compares the incrementally maintained hashes and
// indexes of tree with those of a tree freshly parsed from its bytes.
func checkTreeConsistency(t *testing.T, tree *treekem.Tree) {
	t.Helper()
	fresh, err := treekem.ParseTree(tree.Suite(), tree.Bytes())
	require.NoError(t, err)
	if fresh.Width() != tree.Width() {
		t.Fatalf("width %d, parsed %d", tree.Width(), fresh.Width())
	}
	for n := range tree.Width() {
		if !bytes.Equal(tree.NodeTreeHash(treekem.NodeIndex(n)), fresh.NodeTreeHash(treekem.NodeIndex(n))) {
			t.Fatalf("cached tree hash of node %d is stale", n)
		}
	}
	members := 0
	for l, leaf := range tree.Leaves() {
		members++
		if got, ok := tree.FindSignatureKey(leaf.SignatureKey); !ok || got != l {
			t.Fatalf("leaf %d not found by signature key", l)
		}
		if got, ok := tree.FindEncryptionKey(leaf.EncryptionKey); !ok || got != l.Node() {
			t.Fatalf("leaf %d not found by encryption key", l)
		}
		if !slices.Contains(tree.FindIdentity(&leaf.Credential), l) {
			t.Fatalf("leaf %d not found by identity", l)
		}
	}
	if members != tree.MemberCount() {
		t.Fatalf("MemberCount = %d, counted %d", tree.MemberCount(), members)
	}
	for n := uint32(1); n < tree.Width(); n += 2 {
		if p := tree.ParentNode(treekem.NodeIndex(n)); p != nil {
			if got, ok := tree.FindEncryptionKey(p.EncryptionKey); !ok || got != treekem.NodeIndex(n) {
				t.Fatalf("parent %d not found by encryption key", n)
			}
		}
	}
}

// TestGroupLifecycle drives random sequences of adds, updates, removes and
// commits through every cipher suite, with every member processing every
// commit.
func TestGroupLifecycle(t *testing.T) {
	for _, cs := range hpke.CipherSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(uint64(cs), 42))
			g := newGroup(t, cs, 1)
			g.commit(t, 0, nil, nil, nil) // a group of one
			names := 1
			epochs := 24
			if cs == hpke.MLS_256_DHKEMP521_AES256GCM_SHA512_P521 || cs == hpke.MLS_256_DHKEMP384_AES256GCM_SHA384_P384 {
				epochs = 10 // slow curves, especially under -race
			}
			if testing.Short() {
				epochs = 6
			}
			for range epochs {
				leaves := slices.Sorted(maps.Keys(g.members))
				sender := leaves[rng.IntN(len(leaves))]
				updates := map[treekem.LeafIndex]update{}
				var removes []treekem.LeafIndex
				var adds []*member
				for _, l := range leaves {
					if l == sender {
						continue
					}
					switch rng.IntN(8) {
					case 0:
						if len(leaves)-len(removes) > 2 {
							removes = append(removes, l)
						}
					case 1:
						updates[l] = g.newUpdate(t, l)
					}
				}
				for range rng.IntN(4) {
					adds = append(adds, newMember(t, cs, fmt.Sprintf("member %d", names)))
					names++
				}
				g.commit(t, sender, updates, removes, adds)
			}
			require.NoError(t, g.tree.Validate(g.opts()))
		})
	}
}

func TestTreeOperations(t *testing.T) {
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newGroup(t, cs, 5)
	if g.tree.LeafCount() != 8 || g.tree.MemberCount() != 5 {
		t.Fatalf("5 adds: %d leaves, %d members", g.tree.LeafCount(), g.tree.MemberCount())
	}
	g.commitLocal(t, 0)
	// Leaf 5 is added below non-blank parents 3 and 7 and must become
	// unmerged there, keeping the tree valid.
	m := newMember(t, cs, "late")
	l := g.add(t, m)
	if l != 5 {
		t.Fatalf("added at %d, want 5", l)
	}
	for _, n := range []treekem.NodeIndex{7} {
		if p := g.tree.ParentNode(n); p == nil || !slices.Equal(p.UnmergedLeaves, []treekem.LeafIndex{5}) {
			t.Errorf("node %d: unmerged leaves %v, want [5]", n, p)
		}
	}
	if got := g.tree.Resolution(7); !slices.Equal(got, []treekem.NodeIndex{7, 10}) {
		t.Errorf("resolution of root = %v, want [7 10]", got)
	}
	require.NoError(t, g.tree.Validate(g.opts()))
	checkTreeConsistency(t, g.tree)

	// Removing the right-most members truncates the tree.
	for _, r := range []treekem.LeafIndex{5, 4} {
		require.NoError(t, g.tree.RemoveLeaf(r))
	}
	if g.tree.LeafCount() != 4 {
		t.Errorf("after removing leaves 4 and 5: %d leaves, want 4", g.tree.LeafCount())
	}
	if err := g.tree.RemoveLeaf(4); !errors.Is(err, treekem.ErrBlankLeaf) {
		t.Errorf("removing a leaf out of range: %v", err)
	}
	require.NoError(t, g.tree.RemoveLeaf(2))
	if g.tree.LeftmostBlankLeaf() != 2 {
		t.Errorf("leftmost blank leaf = %d, want 2", g.tree.LeftmostBlankLeaf())
	}
	if l, err := g.tree.AddLeaf(newMember(t, cs, "refill").leaf); err != nil || l != 2 {
		t.Errorf("AddLeaf = %d, %v; want the blank leaf 2", l, err)
	}
	checkTreeConsistency(t, g.tree)

	// Uniqueness is enforced on additions and updates.
	if _, err := g.tree.AddLeaf(g.tree.Leaf(0)); !errors.Is(err, treekem.ErrDuplicateKey) {
		t.Errorf("adding a duplicate leaf: %v", err)
	}
	if err := g.tree.UpdateLeaf(1, g.tree.Leaf(0)); !errors.Is(err, treekem.ErrDuplicateKey) {
		t.Errorf("updating to another member's leaf: %v", err)
	}
	if err := g.tree.ValidateLeafNode(g.tree.Leaf(1), treekem.SourceUpdate, 1, g.opts()); !errors.Is(err, treekem.ErrInvalidLeafNode) {
		t.Errorf("ValidateLeafNode with the wrong source: %v", err)
	}
}

func TestValidateLeafNode(t *testing.T) {
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newGroup(t, cs, 3)
	opts := g.opts()
	opts.Now = vectorNow
	check := func(name string, leaf *treekem.LeafNode, want error) {
		t.Helper()
		err := g.tree.ValidateLeafNode(leaf, treekem.SourceKeyPackage, 0, opts)
		if want == nil && err != nil || want != nil && !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", name, err, want)
		}
		if want != nil && !errors.Is(err, treekem.ErrInvalidLeafNode) {
			t.Errorf("%s: %v does not match ErrInvalidLeafNode", name, err)
		}
	}
	resign := func(m *member, f func(*treekem.LeafNode)) *treekem.LeafNode {
		l := *m.leaf
		f(&l)
		require.NoError(t, l.Sign(cs, m.signer, nil, 0))
		return &l
	}
	m := newMember(t, cs, "new")
	check("fresh", m.leaf, nil)
	check("expired", resign(m, func(l *treekem.LeafNode) { l.Lifetime.NotAfter = 1672531201 }), treekem.ErrLifetime)
	opts.MaxLifetime = 24 * 3600 * 365
	check("too long", m.leaf, treekem.ErrLifetime)
	opts.MaxLifetime = 0
	check("unlisted extension", resign(m, func(l *treekem.LeafNode) { l.Extensions = []treekem.Extension{{Type: 0xff01}} }), treekem.ErrCapabilities)
	check("default extension", resign(m, func(l *treekem.LeafNode) { l.Extensions = []treekem.Extension{{Type: treekem.ExtensionApplicationID}} }), nil)
	check("credential type unsupported by members", resign(m, func(l *treekem.LeafNode) {
		l.Credential = treekem.Credential{Type: 0x0b0b, Data: []byte("x")}
		l.Capabilities.Credentials = append(slices.Clone(l.Capabilities.Credentials), 0x0b0b)
	}), treekem.ErrCapabilities)
	check("missing a credential type in use", resign(m, func(l *treekem.LeafNode) {
		l.Capabilities.Credentials = nil
	}), treekem.ErrCapabilities)
	bad := *m.leaf
	bad.Signature = slices.Clone(bad.Signature)
	bad.Signature[0] ^= 1
	check("bad signature", &bad, treekem.ErrInvalidSignature)
	check("duplicate signature key", g.members[1].leaf, treekem.ErrDuplicateKey)
	opts.RequiredCapabilities = &treekem.RequiredCapabilities{Extensions: []treekem.ExtensionType{0xff02}}
	check("required capability", m.leaf, treekem.ErrCapabilities)
	opts.RequiredCapabilities = &treekem.RequiredCapabilities{Extensions: []treekem.ExtensionType{0xff00, treekem.ExtensionExternalSenders}, Credentials: []treekem.CredentialType{treekem.CredentialBasic}}
	check("required capabilities met", m.leaf, nil)
	opts.RequiredCapabilities = nil
	opts.Credential = func(treekem.LeafIndex, *treekem.LeafNode) error { return errors.New("unknown identity") }
	check("credential rejected", m.leaf, treekem.ErrCredential)
}

// TestConcurrentClones clones one tree from several goroutines, each
// changing its clone, and checks that the original is untouched (run with
// -race).
func TestConcurrentClones(t *testing.T) {
	g := newGroup(t, hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, 300)
	for l := 0; l < 300; l += 7 {
		g.commitLocal(t, treekem.LeafIndex(l))
	}
	before := g.tree.Bytes()
	hash := slices.Clone(g.tree.TreeHash())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 5 {
				c := g.tree.Clone()
				sender := treekem.LeafIndex(w*50 + i)
				if _, err := c.GenerateUpdatePath(sender, nil, g.members[sender].signer, testGroupID, nil); err != nil {
					t.Error(err)
					return
				}
				if err := c.RemoveLeaf(sender + 1); err != nil {
					t.Error(err)
					return
				}
				c.TreeHash()
				c.Clone()
			}
		})
	}
	wg.Wait()
	if !bytes.Equal(g.tree.Bytes(), before) || !bytes.Equal(g.tree.TreeHash(), hash) {
		t.Fatal("clones changed the original tree")
	}
	checkTreeConsistency(t, g.tree)
}
