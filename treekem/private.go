package treekem

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"maps"
	"slices"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
)

// PrivateKeys is a member's private view of the tree (RFC 9420, Section
// 4.2): its leaf index and the HPKE private keys it knows, those of its
// leaf and of parent nodes on its direct path. It must be kept secret.
//
// Methods that change the keys in response to a commit return a new
// PrivateKeys and leave the receiver unchanged, so a rejected commit leaves
// no trace. A PrivateKeys is safe for concurrent reads.
type PrivateKeys struct {
	suite hpke.CipherSuite
	leaf  LeafIndex
	keys  map[NodeIndex]*hpke.PrivateKey
}

// NewPrivateKeys returns the private view of the member at leaf whose leaf
// HPKE private key is leafKey.
func NewPrivateKeys(cs hpke.CipherSuite, leaf LeafIndex, leafKey *hpke.PrivateKey) *PrivateKeys {
	return &PrivateKeys{suite: cs, leaf: leaf, keys: map[NodeIndex]*hpke.PrivateKey{leaf.Node(): leafKey}}
}

// LeafIndex returns the member's leaf.
func (k *PrivateKeys) LeafIndex() LeafIndex { return k.leaf }

// Key returns the private key of node n, or nil if the member does not
// know it.
func (k *PrivateKeys) Key(n NodeIndex) *hpke.PrivateKey { return k.keys[n] }

// Nodes returns the nodes whose private keys the member knows, in
// increasing order.
func (k *PrivateKeys) Nodes() []NodeIndex {
	return slices.Sorted(maps.Keys(k.keys))
}

// String returns "[redacted]": the keys are secret.
func (k *PrivateKeys) String() string { return "[redacted]" }

// Clone returns a copy of k that can be changed without changing k.
func (k *PrivateKeys) Clone() *PrivateKeys {
	return &PrivateKeys{suite: k.suite, leaf: k.leaf, keys: maps.Clone(k.keys)}
}

// SetKey records the private key of node n. Most users won't need it:
// [Tree.DecryptUpdatePath] and [Tree.ImportPathSecret] set keys.
func (k *PrivateKeys) SetKey(n NodeIndex, key *hpke.PrivateKey) {
	k.keys[n] = key
}

// SetPathSecret derives the key pair of node n from its path secret (RFC
// 9420, Section 7.4) and records its private key. Most users won't need
// it.
func (k *PrivateKeys) SetPathSecret(n NodeIndex, pathSecret []byte) error {
	key, err := deriveNodeKey(k.suite, pathSecret)
	if err != nil {
		return err
	}
	k.keys[n] = key
	return nil
}

// Verify checks that every key k holds matches the public key of its node
// in t. Failure matches [ErrPublicKeyMismatch].
func (k *PrivateKeys) Verify(t *Tree) error {
	for _, n := range k.Nodes() {
		if !bytes.Equal(k.keys[n].PublicKey(), t.EncryptionKey(n)) {
			return fmt.Errorf("%w: node %d", ErrPublicKeyMismatch, n)
		}
	}
	return nil
}

// Prune returns a copy of k without the keys of nodes that are blank in t
// or whose public key in t differs, as after a proposal blanked them.
func (k *PrivateKeys) Prune(t *Tree) *PrivateKeys {
	c := k.Clone()
	for n, key := range c.keys {
		if !bytes.Equal(key.PublicKey(), t.EncryptionKey(n)) {
			delete(c.keys, n)
		}
	}
	return c
}

// Bytes returns a serialization of k for storage: the leaf index, then
// each node index with its serialized private key. It is secret.
func (k *PrivateKeys) Bytes() []byte {
	return wire.MustMarshal(func(b *cryptobyte.Builder) {
		b.AddUint16(uint16(k.suite))
		b.AddUint32(uint32(k.leaf))
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for _, n := range k.Nodes() {
				b.AddUint32(uint32(n))
				wire.AddVarintBytes(b, k.keys[n].Bytes())
			}
		})
	})
}

// ParsePrivateKeys decodes the output of [PrivateKeys.Bytes].
func ParsePrivateKeys(data []byte) (*PrivateKeys, error) {
	k := &PrivateKeys{keys: map[NodeIndex]*hpke.PrivateKey{}}
	var keyErr error
	err := wire.Parse(data, func(s *cryptobyte.String) bool {
		if !s.ReadUint16((*uint16)(&k.suite)) || !s.ReadUint32((*uint32)(&k.leaf)) {
			return false
		}
		if !k.suite.Supported() {
			keyErr = hpke.ErrUnsupportedCipherSuite
			return false
		}
		return wire.ReadVector(s, func(s *cryptobyte.String) bool {
			var n uint32
			var raw []byte
			if !s.ReadUint32(&n) || !wire.ReadVarintBytes(s, &raw) {
				return false
			}
			key, err := k.suite.NewPrivateKey(raw)
			clear(raw)
			if err != nil {
				keyErr = err
				return false
			}
			if _, dup := k.keys[NodeIndex(n)]; dup {
				return false
			}
			k.keys[NodeIndex(n)] = key
			return true
		})
	})
	if keyErr != nil {
		return nil, fmt.Errorf("%w: private keys: %w", ErrMalformed, keyErr)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: private keys: %w", ErrMalformed, err)
	}
	return k, nil
}

// deriveNodeKey derives a node's key pair from its path secret:
// DeriveKeyPair(DeriveSecret(path_secret, "node")) (RFC 9420, Section 7.4).
func deriveNodeKey(cs hpke.CipherSuite, pathSecret []byte) (*hpke.PrivateKey, error) {
	nodeSecret := cs.DeriveSecret(pathSecret, "node")
	defer clear(nodeSecret)
	key, err := cs.DeriveKeyPair(nodeSecret)
	if err != nil {
		return nil, fmt.Errorf("treekem: deriving node key: %w", err)
	}
	return key, nil
}

// nextPathSecret returns DeriveSecret(path_secret, "path") (RFC 9420,
// Section 7.4).
func nextPathSecret(cs hpke.CipherSuite, pathSecret []byte) []byte {
	return cs.DeriveSecret(pathSecret, "path")
}

func randomSecret(cs hpke.CipherSuite) []byte {
	b := make([]byte, cs.HashSize())
	rand.Read(b)
	return b
}
