package keyschedule

import (
	"errors"
	"fmt"
	"math"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
)

// ErrTooManyPSKs is returned by [PSKSecret] for more PSKs than a uint16 can
// count.
var ErrTooManyPSKs = errors.New("keyschedule: too many PSKs")

// PSKType says how a pre-shared key was provisioned (RFC 9420, Section 8.4).
type PSKType uint8

// The PSK types of RFC 9420, Section 8.4.
const (
	PSKTypeExternal   PSKType = 1
	PSKTypeResumption PSKType = 2
)

// ResumptionPSKUsage says what a resumption PSK is used for (RFC 9420,
// Section 8.4).
type ResumptionPSKUsage uint8

// The resumption PSK usages of RFC 9420, Section 8.4.
const (
	ResumptionPSKUsageApplication ResumptionPSKUsage = 1
	ResumptionPSKUsageReInit      ResumptionPSKUsage = 2
	ResumptionPSKUsageBranch      ResumptionPSKUsage = 3
)

// PreSharedKeyID names a pre-shared key (RFC 9420, Section 8.4):
//
//	struct {
//	  PSKType psktype;
//	  select (PreSharedKeyID.psktype) {
//	    case external:
//	      opaque psk_id<V>;
//	    case resumption:
//	      ResumptionPSKUsage usage;
//	      opaque psk_group_id<V>;
//	      uint64 psk_epoch;
//	  };
//	  opaque psk_nonce<V>;
//	} PreSharedKeyID;
//
// PSKID is used only when PSKType is [PSKTypeExternal]; Usage, PSKGroupID and
// PSKEpoch only when it is [PSKTypeResumption].
type PreSharedKeyID struct {
	// PSKType is the kind of PSK, external or resumption.
	PSKType PSKType
	// PSKID is the application's identifier of an external PSK.
	PSKID []byte
	// Usage says what a resumption PSK is used for.
	Usage ResumptionPSKUsage
	// PSKGroupID is the group ID of the group a resumption PSK is from.
	PSKGroupID []byte
	// PSKEpoch is the epoch a resumption PSK is from.
	PSKEpoch uint64
	// PSKNonce must be a fresh random value of KDF.Nh bytes each time the
	// PSK is injected (see [NewPSKNonce]).
	PSKNonce []byte
}

// NewPSKNonce returns a fresh random psk_nonce of KDF.Nh bytes for cs.
func NewPSKNonce(cs hpke.CipherSuite) []byte {
	return randomBytes(cs.HashSize())
}

// Marshal appends the TLS encoding of p to b. An unknown PSKType is an
// error of b.
func (p *PreSharedKeyID) Marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(p.PSKType))
	switch p.PSKType {
	case PSKTypeExternal:
		wire.AddVarintBytes(b, p.PSKID)
	case PSKTypeResumption:
		b.AddUint8(uint8(p.Usage))
		wire.AddVarintBytes(b, p.PSKGroupID)
		b.AddUint64(p.PSKEpoch)
	default:
		b.SetError(fmt.Errorf("keyschedule: unknown PSK type %d", p.PSKType))
		return
	}
	wire.AddVarintBytes(b, p.PSKNonce)
}

// Unmarshal reads a PreSharedKeyID from s into p and reports whether it was
// well formed: it rejects the reserved and unknown PSK types. It does not
// check the usage, which the protocol layer validates (RFC 9420, Section
// 12.2). It copies what it keeps from s.
func (p *PreSharedKeyID) Unmarshal(s *cryptobyte.String) bool {
	var out PreSharedKeyID
	var t uint8
	if !s.ReadUint8(&t) {
		return false
	}
	out.PSKType = PSKType(t)
	switch out.PSKType {
	case PSKTypeExternal:
		if !wire.ReadVarintBytes(s, &out.PSKID) {
			return false
		}
	case PSKTypeResumption:
		var u uint8
		if !s.ReadUint8(&u) || !wire.ReadVarintBytes(s, &out.PSKGroupID) || !s.ReadUint64(&out.PSKEpoch) {
			return false
		}
		out.Usage = ResumptionPSKUsage(u)
	default:
		return false
	}
	if !wire.ReadVarintBytes(s, &out.PSKNonce) {
		return false
	}
	*p = out
	return true
}

// Bytes returns the TLS encoding of p. It returns an error for an unknown
// PSKType.
func (p *PreSharedKeyID) Bytes() ([]byte, error) {
	return wire.Marshal(p.Marshal)
}

// ParsePreSharedKeyID decodes a PreSharedKeyID, rejecting trailing data.
// Errors match [ErrMalformed].
func ParsePreSharedKeyID(b []byte) (*PreSharedKeyID, error) {
	var p PreSharedKeyID
	if err := wire.Parse(b, p.Unmarshal); err != nil {
		return nil, fmt.Errorf("%w: PreSharedKeyID: %w", ErrMalformed, err)
	}
	return &p, nil
}

// PSK is a pre-shared key to inject into the key schedule: its identifier
// and its value. For a resumption PSK, Secret is the resumption_psk of the
// named group and epoch ([EpochSecrets.ResumptionPSK]). Secret must be kept
// secret.
type PSK struct {
	// ID names the PSK, as listed in the PreSharedKey proposal or
	// GroupSecrets.
	ID PreSharedKeyID
	// Secret is the PSK's value.
	Secret []byte
}

// PSKSecret computes the psk_secret of RFC 9420, Section 8.4 for the PSKs
// listed in a Commit's PreSharedKey proposals or a Welcome's GroupSecrets, in
// that order:
//
//	psk_extracted_[i] = KDF.Extract(0, psk_[i])
//	psk_input_[i]     = ExpandWithLabel(psk_extracted_[i], "derived psk", PSKLabel, KDF.Nh)
//	psk_secret_[i+1]  = KDF.Extract(psk_input_[i], psk_secret_[i])
//
// where PSKLabel = {id, index, count} and psk_secret_[0] is all zeros. With no
// PSKs it returns the all-zero secret of KDF.Nh bytes. It returns an error if
// an ID cannot be encoded or if there are more than 65535 PSKs.
func PSKSecret(cs hpke.CipherSuite, psks []PSK) ([]byte, error) {
	if !cs.Supported() {
		return nil, hpke.ErrUnsupportedCipherSuite
	}
	if len(psks) > math.MaxUint16 {
		return nil, fmt.Errorf("%w: %d", ErrTooManyPSKs, len(psks))
	}
	nh := cs.HashSize()
	zero := make([]byte, nh)
	secret := make([]byte, nh)
	for i := range psks {
		label, err := wire.Marshal(func(b *cryptobyte.Builder) {
			psks[i].ID.Marshal(b)
			b.AddUint16(uint16(i))
			b.AddUint16(uint16(len(psks)))
		})
		if err != nil {
			erase(secret)
			return nil, fmt.Errorf("keyschedule: PSK %d: %w", i, err)
		}
		extracted := cs.Extract(zero, psks[i].Secret)
		input := cs.ExpandWithLabel(extracted, "derived psk", label, nh)
		next := cs.Extract(input, secret)
		erase(extracted)
		erase(input)
		erase(secret)
		secret = next
	}
	return secret, nil
}
