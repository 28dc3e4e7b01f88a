package testvectors

import (
	"errors"
	"fmt"
	"time"

	"github.com/microchat/e2ee/mls"
)

// sim is a group of e2ee members in one process, used to generate the
// vectors that need real protocol messages. Members are indexed by leaf.
type sim struct {
	g       *generator
	cs      mls.CipherSuite
	cfg     *mls.Config
	psks    pskStore
	members []*mls.Group // by leaf index; nil where the leaf is blank
	names   int
}

// pskStore serves external PSKs by ID.
type pskStore map[string][]byte

func (s pskStore) ExternalPSK(id []byte) ([]byte, error) {
	if v, ok := s[string(id)]; ok {
		return v, nil
	}
	return nil, mls.ErrNotFound
}

func (s pskStore) ResumptionPSK([]byte, uint64) ([]byte, error) { return nil, mls.ErrNotFound }

func vectorNow() time.Time { return VectorTime }

// newKeyPackage makes a KeyPackage with a fresh basic credential.
func (s *sim) newKeyPackage() (*mls.KeyPackagePrivate, error) {
	sig, err := s.cs.GenerateSignatureKey()
	if err != nil {
		return nil, err
	}
	s.names++
	cred := mls.Credential{Type: mls.CredentialBasic, Identity: fmt.Appendf(nil, "member-%d", s.names)}
	return mls.GenerateKeyPackage(s.cs, cred, sig, &mls.KeyPackageOptions{Now: vectorNow})
}

// newSim makes a group of n members: a creator who adds the others in one
// commit.
func newSim(g *generator, cs mls.CipherSuite, n int) (*sim, error) {
	s := &sim{g: g, cs: cs, psks: pskStore{}}
	s.cfg = &mls.Config{Now: vectorNow, PSKs: s.psks, Handshake: mls.HandshakePublic}
	sig, err := cs.GenerateSignatureKey()
	if err != nil {
		return nil, err
	}
	s.names++
	creator, err := mls.NewGroup(cs, mls.Credential{Type: mls.CredentialBasic, Identity: []byte("member-1")}, sig,
		&mls.GroupOptions{GroupID: g.bytes(16)}, s.cfg)
	if err != nil {
		return nil, err
	}
	s.members = []*mls.Group{creator}
	if n > 1 {
		if _, _, err := s.add(0, n-1); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// add has member from commit the addition of n new members, who join.
func (s *sim) add(from, n int) (*mls.PendingCommit, []*mls.KeyPackagePrivate, error) {
	var kps []*mls.KeyPackagePrivate
	var pubs []*mls.KeyPackage
	for range n {
		kp, err := s.newKeyPackage()
		if err != nil {
			return nil, nil, err
		}
		kps = append(kps, kp)
		pubs = append(pubs, kp.KeyPackage)
	}
	p, err := s.commit(from, &mls.CommitOptions{Add: pubs}, kps)
	return p, kps, err
}

// commit has member from commit with opts; every other member processes
// and merges it, and the holders of joiners join from its Welcome.
func (s *sim) commit(from int, opts *mls.CommitOptions, joiners []*mls.KeyPackagePrivate) (*mls.PendingCommit, error) {
	p, err := s.members[from].Commit(opts)
	if err != nil {
		return nil, fmt.Errorf("commit by %d: %w", from, err)
	}
	if err := s.deliver(from, p.Commit); err != nil {
		return nil, err
	}
	if err := s.members[from].MergePendingCommit(p); err != nil {
		return nil, err
	}
	var jopts *mls.JoinOptions
	if opts.RatchetTreeOutOfBand {
		jopts = &mls.JoinOptions{RatchetTree: s.members[from].RatchetTree()}
	}
	for _, kp := range joiners {
		if err := s.join(p.Welcome, kp, jopts); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// join adds the member holding kp from welcome.
func (s *sim) join(welcome *mls.MLSMessage, kp *mls.KeyPackagePrivate, opts *mls.JoinOptions) error {
	j, err := mls.Join(welcome, kp, opts, s.cfg)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	l := int(j.OwnLeafIndex())
	for len(s.members) <= l {
		s.members = append(s.members, nil)
	}
	s.members[l] = j
	return nil
}

// deliver has every member but from process msg, merging it if it is a
// commit; members it removes leave the simulation.
func (s *sim) deliver(from int, msg *mls.MLSMessage) error {
	for i, m := range s.members {
		if m == nil || i == from {
			continue
		}
		res, err := m.Process(msg)
		if err != nil {
			return fmt.Errorf("member %d processing a message from %d: %w", i, from, err)
		}
		if res.Commit != nil {
			if err := m.Merge(res.Commit); err != nil {
				return err
			}
			if !m.Active() {
				s.members[i] = nil
			}
		}
	}
	return nil
}

// live returns the leaf indexes of the members, in order.
func (s *sim) live() []int {
	var out []int
	for i, m := range s.members {
		if m != nil {
			out = append(out, i)
		}
	}
	return out
}

// pick returns a member other than the ones in not, chosen by the stream.
func (s *sim) pick(not ...int) (int, error) {
	var c []int
	for _, i := range s.live() {
		ok := true
		for _, n := range not {
			ok = ok && i != n
		}
		if ok {
			c = append(c, i)
		}
	}
	if len(c) == 0 {
		return 0, errors.New("no member to pick")
	}
	return c[s.g.intn(len(c))], nil
}
