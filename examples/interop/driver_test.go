package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/microchat/e2ee/examples/interop/mlsclient"
)

// driver plays scenarios against MLSClient services the way the harness's
// test runner does: it holds the ids each actor's client returned and the
// messages each step produced, and checks that everyone agrees on the
// epoch authenticator after every commit and join.
type driver struct {
	ctx      context.Context
	pool     []mlsclient.MLSClientClient
	suites   []uint32
	cs       uint32
	encrypt  bool
	clients  map[string]mlsclient.MLSClientClient
	stateID  map[string]uint32
	txID     map[string]uint32
	signerID map[string]uint32
	cache    []map[string][]byte
}

// startServers starts n servers on loopback and returns clients for them.
func startServers(n int) ([]mlsclient.MLSClientClient, func(), error) {
	var pool []mlsclient.MLSClientClient
	var closers []func()
	stop := func() {
		for _, c := range closers {
			c()
		}
	}
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stop()
			return nil, nil, err
		}
		g := grpc.NewServer()
		mlsclient.RegisterMLSClientServer(g, newServer())
		go g.Serve(l)
		conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			g.Stop()
			stop()
			return nil, nil, err
		}
		closers = append(closers, func() { conn.Close(); g.Stop() })
		pool = append(pool, mlsclient.NewMLSClientClient(conn))
	}
	return pool, stop, nil
}

// actors lists a scenario's actors in order of first appearance.
func actors(steps []step) []string {
	var out []string
	add := func(names ...string) {
		for _, n := range names {
			if n != "" && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	for _, s := range steps {
		add(s.actor, s.joiner, s.signer, s.member, s.proposer, s.committer, s.welcomer)
		add(s.members...)
		add(s.joiners...)
		add(s.clients...)
	}
	return out
}

// play runs steps with cipher suite cs, assigning actors to the pool's
// clients in turn (so with two servers, consecutive actors are on
// different ones).
func (d *driver) play(steps []step, cs uint32, encrypt bool) error {
	d.cs, d.encrypt = cs, encrypt
	d.clients = map[string]mlsclient.MLSClientClient{}
	for i, a := range actors(steps) {
		d.clients[a] = d.pool[i%len(d.pool)]
	}
	d.stateID, d.txID, d.signerID = map[string]uint32{}, map[string]uint32{}, map[string]uint32{}
	d.cache = make([]map[string][]byte, len(steps))
	for i := range d.cache {
		d.cache[i] = map[string][]byte{}
	}
	for i, s := range steps {
		if err := d.step(i, &s); err != nil {
			return fmt.Errorf("step %d (%s by %s): %w", i, s.action, s.actor, err)
		}
	}
	return nil
}

func (d *driver) get(i int, key string) ([]byte, error) {
	if i < 0 || i >= len(d.cache) {
		return nil, fmt.Errorf("no step %d", i)
	}
	v, ok := d.cache[i][key]
	if !ok {
		return nil, fmt.Errorf("step %d has no %s", i, key)
	}
	return v, nil
}

func protoExts(exts []ext) []*mlsclient.Extension {
	out := []*mlsclient.Extension{}
	for _, e := range exts {
		out = append(out, &mlsclient.Extension{ExtensionType: e.typ, ExtensionData: e.data})
	}
	return out
}

// newGroupID returns the group ID of a reinitialized group.
func (d *driver) newGroupID(change bool) ([]byte, error) {
	id, err := d.get(0, "group_id")
	if err != nil || !change {
		return id, err
	}
	return append(bytes.Clone(id), "++"...), nil
}

// changeSuite moves to the next supported cipher suite.
func (d *driver) changeSuite() {
	i := slices.Index(d.suites, d.cs)
	d.cs = d.suites[(i+1)%len(d.suites)]
}

func (d *driver) description(p *desc) (*mlsclient.ProposalDescription, error) {
	out := &mlsclient.ProposalDescription{ProposalType: []byte(p.kind)}
	var err error
	switch p.kind {
	case "add":
		out.KeyPackage, err = d.get(p.keyPackage, "key_package")
	case "remove":
		out.RemovedId = []byte(p.removed)
	case "externalPSK":
		out.PskId, err = d.get(p.psk, "psk_id")
	case "resumptionPSK":
		out.EpochId = p.epoch
	case "groupContextExtensions":
		out.Extensions = protoExts(p.exts)
	case "reinit":
		out.Extensions = protoExts(p.exts)
		if p.changeSuite {
			d.changeSuite()
		}
		out.CipherSuite = d.cs
		out.GroupId, err = d.newGroupID(p.changeGroupID)
	default:
		err = fmt.Errorf("unknown proposal type %q", p.kind)
	}
	return out, err
}

func (d *driver) proposals(idx []int) ([][]byte, error) {
	var out [][]byte
	for _, i := range idx {
		p, err := d.get(i, "proposal")
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

var errDisagree = errors.New("epoch authenticators differ")

// join has actor join from the Welcome with its pending KeyPackage.
func (d *driver) join(actor string, welcome, tree, want []byte) error {
	tx, ok := d.txID[actor]
	if !ok {
		return fmt.Errorf("%s has no KeyPackage", actor)
	}
	resp, err := d.clients[actor].JoinGroup(d.ctx, &mlsclient.JoinGroupRequest{
		TransactionId: tx, Welcome: welcome, EncryptHandshake: d.encrypt, Identity: []byte(actor), RatchetTree: tree,
	})
	if err != nil {
		return fmt.Errorf("%s joining: %w", actor, err)
	}
	if !bytes.Equal(resp.EpochAuthenticator, want) {
		return fmt.Errorf("joiner %s: %w", actor, errDisagree)
	}
	d.stateID[actor] = resp.StateId
	return nil
}

// handle has each member process commit (with the proposals it
// references) and checks it reaches the epoch authenticator want.
func (d *driver) handle(members []string, proposals [][]byte, commit, want []byte) error {
	for _, m := range members {
		resp, err := d.clients[m].HandleCommit(d.ctx, &mlsclient.HandleCommitRequest{StateId: d.stateID[m], Proposal: proposals, Commit: commit})
		if err != nil {
			return fmt.Errorf("%s handling the commit: %w", m, err)
		}
		if !bytes.Equal(resp.EpochAuthenticator, want) {
			return fmt.Errorf("member %s: %w", m, errDisagree)
		}
		d.stateID[m] = resp.StateId
	}
	return nil
}

// commit has actor commit and merge, the members process the commit and
// the joiners join; it returns the commit's epoch authenticator.
func (d *driver) commit(i int, s *step) error {
	c := d.clients[s.actor]
	byRef, err := d.proposals(s.byRef)
	if err != nil {
		return err
	}
	var byValue []*mlsclient.ProposalDescription
	for j := range s.byValue {
		p, err := d.description(&s.byValue[j])
		if err != nil {
			return err
		}
		byValue = append(byValue, p)
	}
	resp, err := c.Commit(d.ctx, &mlsclient.CommitRequest{StateId: d.stateID[s.actor], ByReference: byRef, ByValue: byValue,
		ForcePath: s.forcePath, ExternalTree: s.externalTree})
	if err != nil {
		return err
	}
	d.cache[i]["commit"], d.cache[i]["welcome"] = resp.Commit, resp.Welcome
	merged, err := c.HandlePendingCommit(d.ctx, &mlsclient.HandlePendingCommitRequest{StateId: d.stateID[s.actor]})
	if err != nil {
		return err
	}
	d.stateID[s.actor] = merged.StateId
	want := merged.EpochAuthenticator
	d.cache[i]["epoch_authenticator"] = want
	if err := d.handle(s.members, byRef, resp.Commit, want); err != nil {
		return err
	}
	var tree []byte
	if s.externalTree {
		if len(resp.RatchetTree) == 0 {
			return errors.New("no ratchet tree returned for external_tree")
		}
		tree = resp.RatchetTree
	}
	for _, j := range s.joiners {
		if err := d.join(j, resp.Welcome, tree, want); err != nil {
			return err
		}
	}
	return nil
}

func (d *driver) keyPackage(actor string) (*mlsclient.CreateKeyPackageResponse, error) {
	resp, err := d.clients[actor].CreateKeyPackage(d.ctx, &mlsclient.CreateKeyPackageRequest{CipherSuite: d.cs, Identity: []byte(actor)})
	if err != nil {
		return nil, err
	}
	d.txID[actor] = resp.TransactionId
	return resp, nil
}

func (d *driver) step(i int, s *step) error {
	c := d.clients[s.actor]
	put := func(key string, v []byte) { d.cache[i][key] = v }
	proposal := func(resp *mlsclient.ProposalResponse, err error) error {
		if err != nil {
			return err
		}
		put("proposal", resp.Proposal)
		return nil
	}
	switch s.action {
	case "createGroup":
		groupID := make([]byte, 16)
		rand.Read(groupID)
		resp, err := c.CreateGroup(d.ctx, &mlsclient.CreateGroupRequest{GroupId: groupID, CipherSuite: d.cs, EncryptHandshake: d.encrypt, Identity: []byte(s.actor)})
		if err != nil {
			return err
		}
		d.stateID[s.actor] = resp.StateId
		put("group_id", groupID)
		if len(s.members) == 0 {
			return nil
		}
		// With members, the creator adds them all in one commit.
		var adds []*mlsclient.ProposalDescription
		for _, m := range s.members {
			kp, err := d.keyPackage(m)
			if err != nil {
				return err
			}
			adds = append(adds, &mlsclient.ProposalDescription{ProposalType: []byte("add"), KeyPackage: kp.KeyPackage})
		}
		cr, err := c.Commit(d.ctx, &mlsclient.CommitRequest{StateId: resp.StateId, ByValue: adds})
		if err != nil {
			return err
		}
		merged, err := c.HandlePendingCommit(d.ctx, &mlsclient.HandlePendingCommitRequest{StateId: resp.StateId})
		if err != nil {
			return err
		}
		d.stateID[s.actor] = merged.StateId
		for _, m := range s.members {
			if err := d.join(m, cr.Welcome, nil, merged.EpochAuthenticator); err != nil {
				return err
			}
		}

	case "createKeyPackage":
		resp, err := d.keyPackage(s.actor)
		if err != nil {
			return err
		}
		put("key_package", resp.KeyPackage)

	case "externalJoin":
		gi, err := c.GroupInfo(d.ctx, &mlsclient.GroupInfoRequest{StateId: d.stateID[s.actor], ExternalTree: s.externalTree})
		if err != nil {
			return err
		}
		var psks []*mlsclient.PreSharedKey
		for _, p := range s.psks {
			id, err := d.get(p, "psk_id")
			if err != nil {
				return err
			}
			secret, err := d.get(p, "psk_secret")
			if err != nil {
				return err
			}
			psks = append(psks, &mlsclient.PreSharedKey{PskId: id, PskSecret: secret})
		}
		resp, err := d.clients[s.joiner].ExternalJoin(d.ctx, &mlsclient.ExternalJoinRequest{GroupInfo: gi.GroupInfo, RatchetTree: gi.RatchetTree,
			EncryptHandshake: d.encrypt, Identity: []byte(s.joiner), RemovePrior: s.removePrior, Psks: psks})
		if err != nil {
			return fmt.Errorf("%s joining by external commit: %w", s.joiner, err)
		}
		d.stateID[s.joiner] = resp.StateId
		put("commit", resp.Commit)
		put("epoch_authenticator", resp.EpochAuthenticator)
		return d.handle(append(slices.Clone(s.members), s.actor), nil, resp.Commit, resp.EpochAuthenticator)

	case "installExternalPSK":
		id, secret := make([]byte, 32), make([]byte, 32)
		rand.Read(id)
		rand.Read(secret)
		put("psk_id", id)
		put("psk_secret", secret)
		for _, name := range s.clients {
			sid, ok := d.stateID[name]
			if !ok {
				sid = d.txID[name]
			}
			if _, err := d.clients[name].StorePSK(d.ctx, &mlsclient.StorePSKRequest{StateOrTransactionId: sid, PskId: id, PskSecret: secret}); err != nil {
				return err
			}
		}

	case "addProposal":
		kp, err := d.get(s.keyPackage, "key_package")
		if err != nil {
			return err
		}
		return proposal(c.AddProposal(d.ctx, &mlsclient.AddProposalRequest{StateId: d.stateID[s.actor], KeyPackage: kp}))
	case "updateProposal":
		return proposal(c.UpdateProposal(d.ctx, &mlsclient.UpdateProposalRequest{StateId: d.stateID[s.actor]}))
	case "removeProposal":
		return proposal(c.RemoveProposal(d.ctx, &mlsclient.RemoveProposalRequest{StateId: d.stateID[s.actor], RemovedId: []byte(s.removed)}))
	case "externalPSKProposal":
		id, err := d.get(s.psk, "psk_id")
		if err != nil {
			return err
		}
		return proposal(c.ExternalPSKProposal(d.ctx, &mlsclient.ExternalPSKProposalRequest{StateId: d.stateID[s.actor], PskId: id}))
	case "resumptionPSKProposal":
		return proposal(c.ResumptionPSKProposal(d.ctx, &mlsclient.ResumptionPSKProposalRequest{StateId: d.stateID[s.actor], EpochId: s.epoch}))
	case "groupContextExtensionsProposal":
		return proposal(c.GroupContextExtensionsProposal(d.ctx, &mlsclient.GroupContextExtensionsProposalRequest{StateId: d.stateID[s.actor], Extensions: protoExts(s.exts)}))

	case "fullCommit":
		return d.commit(i, s)

	case "protect":
		resp, err := c.Protect(d.ctx, &mlsclient.ProtectRequest{StateId: d.stateID[s.actor], AuthenticatedData: []byte(s.ad), Plaintext: []byte(s.pt)})
		if err != nil {
			return err
		}
		put("ciphertext", resp.Ciphertext)
		put("authenticated_data", []byte(s.ad))
		put("plaintext", []byte(s.pt))

	case "unprotect":
		ct, err := d.get(s.ciphertext, "ciphertext")
		if err != nil {
			return err
		}
		resp, err := c.Unprotect(d.ctx, &mlsclient.UnprotectRequest{StateId: d.stateID[s.actor], Ciphertext: ct})
		if err != nil {
			return err
		}
		if !bytes.Equal(resp.AuthenticatedData, d.cache[s.ciphertext]["authenticated_data"]) || !bytes.Equal(resp.Plaintext, d.cache[s.ciphertext]["plaintext"]) {
			return errors.New("unprotected message differs")
		}

	case "reinit":
		return d.reinit(s)

	case "branch":
		tx := map[string]uint32{}
		var kps [][]byte
		for _, m := range s.members {
			kp, err := d.keyPackage(m)
			if err != nil {
				return err
			}
			tx[m] = kp.TransactionId
			kps = append(kps, kp.KeyPackage)
		}
		groupID := make([]byte, 16)
		rand.Read(groupID)
		var exts []*mlsclient.Extension
		if s.exts != nil {
			exts = protoExts(s.exts)
		}
		resp, err := c.CreateBranch(d.ctx, &mlsclient.CreateBranchRequest{StateId: d.stateID[s.actor], GroupId: groupID, Extensions: exts,
			KeyPackages: kps, ForcePath: s.forcePath, ExternalTree: s.externalTree})
		if err != nil {
			return err
		}
		d.stateID[s.actor] = resp.StateId
		for _, m := range s.members {
			hb, err := d.clients[m].HandleBranch(d.ctx, &mlsclient.HandleBranchRequest{StateId: d.stateID[m], TransactionId: tx[m],
				Welcome: resp.Welcome, RatchetTree: resp.RatchetTree})
			if err != nil {
				return fmt.Errorf("%s joining the branch: %w", m, err)
			}
			if !bytes.Equal(hb.EpochAuthenticator, resp.EpochAuthenticator) {
				return fmt.Errorf("branch member %s: %w", m, errDisagree)
			}
			d.stateID[m] = hb.StateId
		}

	case "newMemberAddProposal":
		gi, err := c.GroupInfo(d.ctx, &mlsclient.GroupInfoRequest{StateId: d.stateID[s.actor]})
		if err != nil {
			return err
		}
		resp, err := d.clients[s.joiner].NewMemberAddProposal(d.ctx, &mlsclient.NewMemberAddProposalRequest{GroupInfo: gi.GroupInfo, Identity: []byte(s.joiner)})
		if err != nil {
			return err
		}
		d.txID[s.joiner] = resp.TransactionId
		put("proposal", resp.Proposal)

	case "addExternalSigner":
		signer, err := d.clients[s.signer].CreateExternalSigner(d.ctx, &mlsclient.CreateExternalSignerRequest{CipherSuite: d.cs, Identity: []byte(s.signer)})
		if err != nil {
			return err
		}
		d.signerID[s.signer] = signer.SignerId
		return proposal(c.AddExternalSigner(d.ctx, &mlsclient.AddExternalSignerRequest{StateId: d.stateID[s.actor], ExternalSender: signer.ExternalSender}))

	case "externalSignerProposal":
		gi, err := d.clients[s.member].GroupInfo(d.ctx, &mlsclient.GroupInfoRequest{StateId: d.stateID[s.member], ExternalTree: true})
		if err != nil {
			return err
		}
		desc, err := d.description(s.description)
		if err != nil {
			return err
		}
		return proposal(c.ExternalSignerProposal(d.ctx, &mlsclient.ExternalSignerProposalRequest{SignerId: d.signerID[s.actor],
			GroupInfo: gi.GroupInfo, RatchetTree: gi.RatchetTree, Description: desc}))

	default:
		return fmt.Errorf("unknown action %q", s.action)
	}
	return nil
}

// reinit plays a ReInit: a proposal (by the proposer or an earlier
// external one), its commit by the committer, the new group created by the
// welcomer and joined by everyone else.
func (d *driver) reinit(s *step) error {
	notCommitter := map[string]bool{s.welcomer: true}
	notWelcomer := map[string]bool{s.committer: true}
	for _, m := range append(slices.Clone(s.members), s.proposer) {
		if m != "" {
			notCommitter[m], notWelcomer[m] = true, true
		}
	}
	delete(notCommitter, s.committer)
	delete(notWelcomer, s.welcomer)

	var proposal []byte
	var err error
	if s.proposer != "" {
		groupID, err := d.newGroupID(s.changeGroupID)
		if err != nil {
			return err
		}
		if s.changeSuite {
			d.changeSuite()
		}
		resp, err := d.clients[s.proposer].ReInitProposal(d.ctx, &mlsclient.ReInitProposalRequest{StateId: d.stateID[s.proposer],
			CipherSuite: d.cs, GroupId: groupID, Extensions: protoExts(s.exts)})
		if err != nil {
			return err
		}
		proposal = resp.Proposal
	} else if proposal, err = d.get(s.externalReinitProposal, "proposal"); err != nil {
		return err
	}

	committer := d.clients[s.committer]
	cr, err := committer.ReInitCommit(d.ctx, &mlsclient.CommitRequest{StateId: d.stateID[s.committer], ByReference: [][]byte{proposal}})
	if err != nil {
		return err
	}
	pr, err := committer.HandlePendingReInitCommit(d.ctx, &mlsclient.HandlePendingCommitRequest{StateId: d.stateID[s.committer]})
	if err != nil {
		return err
	}
	reinitID := map[string]uint32{s.committer: pr.ReinitId}
	keyPackages := map[string][]byte{s.committer: pr.KeyPackage}
	for _, m := range sorted(notCommitter) {
		resp, err := d.clients[m].HandleReInitCommit(d.ctx, &mlsclient.HandleCommitRequest{StateId: d.stateID[m], Proposal: [][]byte{proposal}, Commit: cr.Commit})
		if err != nil {
			return fmt.Errorf("%s handling the reinit commit: %w", m, err)
		}
		if !bytes.Equal(resp.EpochAuthenticator, pr.EpochAuthenticator) {
			return fmt.Errorf("member %s: %w", m, errDisagree)
		}
		reinitID[m], keyPackages[m] = resp.ReinitId, resp.KeyPackage
	}
	var kps [][]byte
	for _, m := range sorted(notWelcomer) {
		kps = append(kps, keyPackages[m])
	}
	wr, err := d.clients[s.welcomer].ReInitWelcome(d.ctx, &mlsclient.ReInitWelcomeRequest{ReinitId: reinitID[s.welcomer], KeyPackage: kps,
		ForcePath: s.forcePath, ExternalTree: s.externalTree})
	if err != nil {
		return fmt.Errorf("%s creating the new group: %w", s.welcomer, err)
	}
	d.stateID[s.welcomer] = wr.StateId
	for _, m := range sorted(notWelcomer) {
		resp, err := d.clients[m].HandleReInitWelcome(d.ctx, &mlsclient.HandleReInitWelcomeRequest{ReinitId: reinitID[m], Welcome: wr.Welcome, RatchetTree: wr.RatchetTree})
		if err != nil {
			return fmt.Errorf("%s joining the new group: %w", m, err)
		}
		if !bytes.Equal(resp.EpochAuthenticator, wr.EpochAuthenticator) {
			return fmt.Errorf("member %s of the new group: %w", m, errDisagree)
		}
		d.stateID[m] = resp.StateId
	}
	return nil
}

func sorted(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
