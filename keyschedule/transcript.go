package keyschedule

import (
	"crypto/hmac"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
)

// ConfirmedTranscriptHash returns the confirmed transcript hash of a new
// epoch (RFC 9420, Section 8.2):
//
//	confirmed_transcript_hash_[epoch] =
//	    Hash(interim_transcript_hash_[epoch - 1] || ConfirmedTranscriptHashInput_[epoch])
//
// where input is the encoded ConfirmedTranscriptHashInput of the Commit
// that starts the epoch: its wire_format, FramedContent and signature<V>,
// which are the AuthenticatedContent without the confirmation tag. The
// interim transcript hash of a new group's epoch 0 is empty.
func ConfirmedTranscriptHash(cs hpke.CipherSuite, interimBefore, input []byte) []byte {
	h := cs.NewHash()
	h.Write(interimBefore)
	h.Write(input)
	return h.Sum(nil)
}

// InterimTranscriptHash returns the interim transcript hash of an epoch
// (RFC 9420, Section 8.2):
//
//	interim_transcript_hash_[epoch] =
//	    Hash(confirmed_transcript_hash_[epoch] || InterimTranscriptHashInput_[epoch])
//
// where InterimTranscriptHashInput is the confirmation_tag of the Commit
// (or GroupInfo) encoded as a MAC, opaque<V>.
func InterimTranscriptHash(cs hpke.CipherSuite, confirmed, confirmationTag []byte) []byte {
	h := cs.NewHash()
	h.Write(confirmed)
	var prefix [4]byte
	h.Write(wire.AppendVarint(prefix[:0], uint32(len(confirmationTag))))
	h.Write(confirmationTag)
	return h.Sum(nil)
}

// ConfirmationTag returns MAC(confirmationKey, confirmedTranscriptHash), the
// confirmation_tag of RFC 9420, Section 6.1. [EpochSecrets.ConfirmationTag]
// does the same with the epoch's key.
func ConfirmationTag(cs hpke.CipherSuite, confirmationKey, confirmedTranscriptHash []byte) []byte {
	return cs.MAC(confirmationKey, confirmedTranscriptHash)
}

// VerifyConfirmationTag reports whether tag is the confirmation tag of
// confirmedTranscriptHash under confirmationKey, comparing in constant time.
func VerifyConfirmationTag(cs hpke.CipherSuite, confirmationKey, confirmedTranscriptHash, tag []byte) bool {
	return hmac.Equal(ConfirmationTag(cs, confirmationKey, confirmedTranscriptHash), tag)
}
