package hpke

import (
	"hash"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/wire"
)

// useLabelPair passes the serialized label pair of labelPair to use,
// built in a pooled scratch buffer that is cleared afterwards: verifying a
// signature over, or decrypting with the context of, a large structure
// (a GroupInfo holding the tree) then costs no copy of it.
func useLabelPair(prefix, label string, value []byte, use func([]byte)) error {
	return wire.Use(func(b *cryptobyte.Builder) {
		addVarintString(b, prefix, label)
		wire.AddVarintBytes(b, value)
	}, use)
}

// labeledExtractScratch is labeledExtract with its input built in a pooled
// scratch buffer, cleared after use: the ikm may be large (the info of a
// Welcome's HPKE holds the encrypted GroupInfo, and so the tree) or secret.
func labeledExtractScratch(h func() hash.Hash, suiteID, salt []byte, label string, ikm []byte) []byte {
	var prk []byte
	err := wire.Use(func(b *cryptobyte.Builder) {
		b.AddBytes([]byte(hpkeVersion))
		b.AddBytes(suiteID)
		b.AddBytes([]byte(label))
		b.AddBytes(ikm)
	}, func(buf []byte) { prk = extract(h, salt, buf) })
	if err != nil {
		panic("hpke: internal error: " + err.Error())
	}
	return prk
}
