package testvectors

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/mls"
)

// This file holds the passive-client vector types: passive-client-welcome,
// passive-client-handling-commit and passive-client-random.

type externalPSK struct {
	PSKID hexBytes `json:"psk_id"`
	PSK   hexBytes `json:"psk"`
}

type passiveEpoch struct {
	Proposals          []hexBytes `json:"proposals"`
	Commit             hexBytes   `json:"commit"`
	EpochAuthenticator hexBytes   `json:"epoch_authenticator"`
}

type passiveClientVector struct {
	CipherSuite               uint16         `json:"cipher_suite"`
	ExternalPSKs              []externalPSK  `json:"external_psks"`
	KeyPackage                hexBytes       `json:"key_package"`
	SignaturePriv             hexBytes       `json:"signature_priv"`
	EncryptionPriv            hexBytes       `json:"encryption_priv"`
	InitPriv                  hexBytes       `json:"init_priv"`
	Welcome                   hexBytes       `json:"welcome"`
	RatchetTree               hexBytes       `json:"ratchet_tree"`
	InitialEpochAuthenticator hexBytes       `json:"initial_epoch_authenticator"`
	Epochs                    []passiveEpoch `json:"epochs"`
}

// checkPassiveClient joins a group from the vector's Welcome with the
// public API and processes every epoch's proposals and commit, checking
// the epoch authenticators (RFC 9420, Sections 12.4.3 and 12.4.2).
func checkPassiveClient(c *checker, v *passiveClientVector) {
	cs := c.suite(v.CipherSuite)
	kpMsg, err := mls.ParseMessage(v.KeyPackage)
	c.must("key_package", err)
	kp := kpMsg.KeyPackage
	if kp == nil {
		c.fatalf("key_package is not a KeyPackage")
	}
	initKey, err := cs.NewPrivateKey(v.InitPriv)
	c.must("init_priv", err)
	encKey, err := cs.NewPrivateKey(v.EncryptionPriv)
	c.must("encryption_priv", err)
	sigKey, err := cs.NewSignaturePrivateKey(v.SignaturePriv)
	c.must("signature_priv", err)
	psks := pskStore{}
	for _, p := range v.ExternalPSKs {
		psks[string(p.PSKID)] = p.PSK
	}
	// Run the clock at the middle of the joiner's lifetime: the official
	// vectors' KeyPackages carry lifetimes from 2023.
	lt := kp.LeafNode.Lifetime
	now := time.Unix(int64(lt.NotBefore/2+lt.NotAfter/2), 0)
	// Their leaves have lifetimes of a year or of 0 to 2^64-1 seconds:
	// accept any total lifetime (RFC 9420, §7.2 leaves the maximum to the
	// application).
	cfg := &mls.Config{Now: func() time.Time { return now }, PSKs: psks, MaxLeafLifetime: -1}

	welcome, err := mls.ParseMessage(v.Welcome)
	c.must("welcome", err)
	g, err := mls.Join(welcome, &mls.KeyPackagePrivate{KeyPackage: kp, InitKey: initKey, EncryptionKey: encKey, SignatureKey: sigKey},
		&mls.JoinOptions{RatchetTree: v.RatchetTree}, cfg)
	c.must("Join", err)
	if !c.equal("initial epoch authenticator", g.EpochAuthenticator(), v.InitialEpochAuthenticator) {
		return
	}
	for i, e := range v.Epochs {
		for j, pdata := range e.Proposals {
			m, err := mls.ParseMessage(pdata)
			c.must(fmt.Sprintf("epoch %d proposal %d", i, j), err)
			_, err = g.Process(m)
			c.must(fmt.Sprintf("epoch %d proposal %d", i, j), err)
		}
		m, err := mls.ParseMessage(e.Commit)
		c.must(fmt.Sprintf("epoch %d commit", i), err)
		before := g.Epoch()
		res, err := g.Process(m)
		c.must(fmt.Sprintf("epoch %d commit", i), err)
		if res.Commit == nil {
			c.fatalf("epoch %d: not a commit", i)
		}
		if g.Epoch() != before {
			c.fatalf("epoch %d: Process changed the epoch", i)
		}
		c.must(fmt.Sprintf("epoch %d: Merge", i), g.Merge(res.Commit))
		if !c.equal(fmt.Sprintf("epoch %d: epoch authenticator", i), g.EpochAuthenticator(), e.EpochAuthenticator) {
			return
		}
		// The same commit again is now for a past epoch.
		if _, err := g.Process(m); !errors.Is(err, mls.ErrWrongEpoch) {
			c.fatalf("epoch %d: replayed commit: %v, want ErrWrongEpoch", i, err)
		}
	}
}

// passive is a passive-client vector being generated: a sim whose member
// at leaf passive only ever receives.
type passive struct {
	*sim
	v       passiveClientVector
	passive int
}

// newPassive makes a group of n members and has one of them add the
// passive client with opts (Add is filled in).
func newPassive(g *generator, cs hpke.CipherSuite, n int, opts *mls.CommitOptions, psk []byte) (*passive, error) {
	s, err := newSim(g, cs, n)
	if err != nil {
		return nil, err
	}
	p := &passive{sim: s, v: passiveClientVector{CipherSuite: uint16(cs), ExternalPSKs: []externalPSK{}, Epochs: []passiveEpoch{}}}
	kp, err := s.newKeyPackage()
	if err != nil {
		return nil, err
	}
	p.v.KeyPackage = messageBytes(&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatKeyPackage, KeyPackage: kp.KeyPackage})
	p.v.InitPriv, p.v.EncryptionPriv, p.v.SignaturePriv = kp.InitKey.Bytes(), kp.EncryptionKey.Bytes(), kp.SignatureKey.Bytes()
	if psk != nil {
		p.addPSK(opts, psk)
	}
	opts.Add = []*mls.KeyPackage{kp.KeyPackage}
	committer, err := s.pick()
	if err != nil {
		return nil, err
	}
	pc, err := s.commit(committer, opts, []*mls.KeyPackagePrivate{kp})
	if err != nil {
		return nil, err
	}
	p.v.Welcome = messageBytes(pc.Welcome)
	if opts.RatchetTreeOutOfBand {
		p.v.RatchetTree = slices.Clone(s.members[committer].RatchetTree())
	}
	p.v.InitialEpochAuthenticator = slices.Clone(s.members[committer].EpochAuthenticator())
	for i, m := range s.members {
		if m != nil && bytes.Equal(m.Members()[m.OwnLeafIndex()].SignatureKey, kp.SignatureKey.PublicKey()) {
			p.passive = i
		}
	}
	return p, nil
}

// addPSK makes a new external PSK known to every member and the vector,
// and adds its ID to opts.
func (p *passive) addPSK(opts *mls.CommitOptions, secret []byte) mls.PreSharedKeyID {
	id := mls.PreSharedKeyID{PSKType: keyschedule.PSKTypeExternal, PSKID: p.g.bytes(8), PSKNonce: p.g.bytes(p.cs.HashSize())}
	p.psks[string(id.PSKID)] = secret
	p.v.ExternalPSKs = append(p.v.ExternalPSKs, externalPSK{PSKID: id.PSKID, PSK: secret})
	if opts != nil {
		opts.PSKs = append(opts.PSKs, id)
	}
	return id
}

// propose sends a proposal from member from to everyone and records it.
func (p *passive) propose(e *passiveEpoch, from int, msg *mls.MLSMessage, err error) error {
	if err != nil {
		return fmt.Errorf("proposal by %d: %w", from, err)
	}
	e.Proposals = append(e.Proposals, messageBytes(msg))
	return p.deliver(from, msg)
}

// commitEpoch has member from commit with opts and records the epoch.
func (p *passive) commitEpoch(e passiveEpoch, from int, opts *mls.CommitOptions, joiners []*mls.KeyPackagePrivate) error {
	pc, err := p.commit(from, opts, joiners)
	if err != nil {
		return err
	}
	e.Commit = messageBytes(pc.Commit)
	e.EpochAuthenticator = slices.Clone(p.members[from].EpochAuthenticator())
	if e.Proposals == nil {
		e.Proposals = []hexBytes{}
	}
	p.v.Epochs = append(p.v.Epochs, e)
	return nil
}

func genPassiveWelcome(g *generator) ([]passiveClientVector, error) {
	var out []passiveClientVector
	for _, cs := range rfcSuites {
		for _, tc := range []struct {
			outOfBand bool
			psk       bool
		}{{false, false}, {true, false}, {false, true}} {
			var psk []byte
			if tc.psk {
				psk = g.bytes(cs.HashSize())
			}
			p, err := newPassive(g, cs, 3, &mls.CommitOptions{RatchetTreeOutOfBand: tc.outOfBand}, psk)
			if err != nil {
				return nil, err
			}
			out = append(out, p.v)
		}
	}
	return out, nil
}

func genPassiveHandlingCommit(g *generator) ([]passiveClientVector, error) {
	var out []passiveClientVector
	for _, cs := range rfcSuites {
		p, err := newPassive(g, cs, 4, &mls.CommitOptions{}, nil)
		if err != nil {
			return nil, err
		}
		if err := p.handlingCommitEpochs(); err != nil {
			return nil, err
		}
		out = append(out, p.v)
	}
	return out, nil
}

// handlingCommitEpochs records commits with proposals by reference and by
// value of each kind a member may send: Add, Update, Remove and
// PreSharedKey, and a commit with only a path.
func (p *passive) handlingCommitEpochs() error {
	a, err := p.pick(p.passive)
	if err != nil {
		return err
	}
	b, err := p.pick(p.passive, a)
	if err != nil {
		return err
	}
	// Add and Remove by reference.
	kp, err := p.newKeyPackage()
	if err != nil {
		return err
	}
	var e passiveEpoch
	msg, err := p.members[a].ProposeAdd(kp.KeyPackage)
	if err := p.propose(&e, a, msg, err); err != nil {
		return err
	}
	victim, err := p.pick(p.passive, a, b)
	if err != nil {
		return err
	}
	msg, err = p.members[a].ProposeRemove(mls.LeafIndex(victim))
	if err := p.propose(&e, a, msg, err); err != nil {
		return err
	}
	if err := p.commitEpoch(e, b, &mls.CommitOptions{}, []*mls.KeyPackagePrivate{kp}); err != nil {
		return err
	}
	// Update by reference.
	e = passiveEpoch{}
	msg, err = p.members[b].ProposeUpdate()
	if err := p.propose(&e, b, msg, err); err != nil {
		return err
	}
	if err := p.commitEpoch(e, a, &mls.CommitOptions{}, nil); err != nil {
		return err
	}
	// PreSharedKey by reference.
	e = passiveEpoch{}
	id := p.addPSK(nil, p.g.bytes(p.cs.HashSize()))
	msg, err = p.members[a].ProposePSK(id)
	if err := p.propose(&e, a, msg, err); err != nil {
		return err
	}
	if err := p.commitEpoch(e, b, &mls.CommitOptions{}, nil); err != nil {
		return err
	}
	// Add and PreSharedKey by value, and a path-only commit.
	kp, err = p.newKeyPackage()
	if err != nil {
		return err
	}
	opts := &mls.CommitOptions{Add: []*mls.KeyPackage{kp.KeyPackage}}
	p.addPSK(opts, p.g.bytes(p.cs.HashSize()))
	if err := p.commitEpoch(passiveEpoch{}, a, opts, []*mls.KeyPackagePrivate{kp}); err != nil {
		return err
	}
	return p.commitEpoch(passiveEpoch{}, b, &mls.CommitOptions{ForcePath: true}, nil)
}

func genPassiveRandom(g *generator) ([]passiveClientVector, error) {
	var out []passiveClientVector
	for _, cs := range rfcSuites {
		p, err := newPassive(g, cs, 3, &mls.CommitOptions{}, nil)
		if err != nil {
			return nil, err
		}
		for range 8 {
			if err := p.randomEpoch(); err != nil {
				return nil, err
			}
		}
		out = append(out, p.v)
	}
	return out, nil
}

// randomEpoch has a random member commit a random mix of adds, removes
// and updates, some proposed by other members first.
func (p *passive) randomEpoch() error {
	committer, err := p.pick(p.passive)
	if err != nil {
		return err
	}
	var e passiveEpoch
	opts := &mls.CommitOptions{}
	var joiners []*mls.KeyPackagePrivate
	updater := -1
	for range 1 + p.g.intn(3) {
		switch p.g.intn(4) {
		case 0: // add by value
			kp, err := p.newKeyPackage()
			if err != nil {
				return err
			}
			opts.Add = append(opts.Add, kp.KeyPackage)
			joiners = append(joiners, kp)
		case 1: // remove by value, while the group has more than three
			if len(p.live()) > 3 {
				victim, err := p.pick(p.passive, committer, updater)
				if err != nil {
					return err
				}
				removed := false
				for _, r := range opts.Remove {
					removed = removed || int(r) == victim
				}
				if !removed {
					opts.Remove = append(opts.Remove, mls.LeafIndex(victim))
				}
			}
		case 2: // an update by reference from another member
			if len(e.Proposals) == 0 {
				from, err := p.pick(p.passive, committer)
				if err != nil {
					return err
				}
				for _, r := range opts.Remove {
					if int(r) == from {
						from = -1
					}
				}
				if from >= 0 {
					updater = from
					msg, err := p.members[from].ProposeUpdate()
					if err := p.propose(&e, from, msg, err); err != nil {
						return err
					}
				}
			}
		case 3:
			opts.ForcePath = true
		}
	}
	return p.commitEpoch(e, committer, opts, joiners)
}
