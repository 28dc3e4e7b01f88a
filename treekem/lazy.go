package treekem

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/wire"
)

// This file reads a single leaf out of an encoded ratchet tree without
// decoding the tree, so that a signature over a structure carrying the
// tree (a GroupInfo, RFC 9420, Section 12.4.3) can be verified with the
// signer's key before the tree is built: a forged tree then costs one walk
// over its bytes and one signature check.

// LeafSignatureKey returns the signature key of leaf l of the encoded
// `optional<Node> ratchet_tree<V>` data, without decoding the rest of the
// tree or allocating: the result points into data. It fails with
// [ErrMalformed] if the encoding is malformed up to and including that
// leaf, with [ErrBlankLeaf] if the leaf is blank, and with
// [ErrLeafIndexRange] if it is beyond the tree's end.
func LeafSignatureKey(data []byte, l LeafIndex) ([]byte, error) {
	s := cryptobyte.String(data)
	var body cryptobyte.String
	if !wire.ReadVarintPrefixed(&s, &body) {
		return nil, fmt.Errorf("%w: ratchet tree", ErrMalformed)
	}
	want := uint64(l) * 2
	var i uint64
	reached := false // node want was read (and is blank or a parent)
	for ; !body.Empty(); i++ {
		var present bool
		if !wire.ReadOptional(&body, &present) {
			return nil, fmt.Errorf("%w: ratchet tree node %d", ErrMalformed, i)
		}
		if !present {
			if i == want {
				reached = true
				break
			}
			continue
		}
		var typ uint8
		if !body.ReadUint8(&typ) {
			return nil, fmt.Errorf("%w: ratchet tree node %d", ErrMalformed, i)
		}
		var ok bool
		var key []byte
		switch NodeType(typ) {
		case NodeTypeLeaf:
			ok = skipLeafNode(&body, &key)
		case NodeTypeParent:
			ok = skipParentNode(&body)
		}
		if !ok {
			return nil, fmt.Errorf("%w: ratchet tree node %d", ErrMalformed, i)
		}
		if i == want {
			if NodeType(typ) != NodeTypeLeaf {
				reached = true
				break
			}
			return key, nil
		}
	}
	if i < want || (i == want && !reached) {
		return nil, fmt.Errorf("%w: leaf %d is past the tree's last node", ErrLeafIndexRange, l)
	}
	return nil, fmt.Errorf("%w: leaf %d", ErrBlankLeaf, l)
}

// ErrLeafIndexRange means a leaf index names a leaf past the end of the
// tree.
var ErrLeafIndexRange = errors.New("treekem: leaf index out of range")

// skipParentNode reads past a ParentNode.
func skipParentNode(s *cryptobyte.String) bool {
	var um cryptobyte.String
	return wire.SkipVarintBytesN(s, 2) && wire.ReadVarintPrefixed(s, &um) && len(um)%4 == 0
}

// skipLeafNode reads past a LeafNode, as [LeafNode.Unmarshal] would accept
// it, and sets sigKey to its signature key (pointing into s).
func skipLeafNode(s *cryptobyte.String, sigKey *[]byte) bool {
	var key cryptobyte.String
	var ct uint16
	if !wire.SkipVarintBytes(s) || !wire.ReadVarintPrefixed(s, &key) || !s.ReadUint16(&ct) {
		return false
	}
	switch CredentialType(ct) {
	case CredentialX509:
		var certs cryptobyte.String
		if !wire.ReadVarintPrefixed(s, &certs) {
			return false
		}
		if _, ok := wire.CountElements(certs, skipCertificate); !ok {
			return false
		}
	default:
		if !wire.SkipVarintBytes(s) {
			return false
		}
	}
	for range 5 { // capabilities
		var v cryptobyte.String
		if !wire.ReadVarintPrefixed(s, &v) || len(v)%2 != 0 {
			return false
		}
	}
	var src uint8
	if !s.ReadUint8(&src) {
		return false
	}
	switch LeafNodeSource(src) {
	case SourceKeyPackage:
		if !s.Skip(16) {
			return false
		}
	case SourceUpdate:
	case SourceCommit:
		if !wire.SkipVarintBytes(s) {
			return false
		}
	default:
		return false
	}
	var exts cryptobyte.String
	if !wire.ReadVarintPrefixed(s, &exts) {
		return false
	}
	if _, ok := wire.CountElements(exts, func(s *cryptobyte.String) bool {
		return s.Skip(2) && wire.SkipVarintBytes(s)
	}); !ok {
		return false
	}
	if !wire.SkipVarintBytes(s) {
		return false
	}
	*sigKey = key[:len(key):len(key)]
	return true
}

// SkipLeafNode reads past a LeafNode in s, accepting what
// [LeafNode.Unmarshal] accepts, without decoding or allocating. Decoders
// use it to count a vector before allocating its slice. Most users won't
// need it.
func SkipLeafNode(s *cryptobyte.String) bool {
	var key []byte
	return skipLeafNode(s, &key)
}
