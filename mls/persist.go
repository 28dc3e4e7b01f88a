package mls

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// This file is the persistence protocol's API: saving a group as records
// in a GroupStore, storing a commit before sending it, and recovering it
// after a crash. The package documentation ("Persistence") says in which
// order to call what.

// SaveOptions are the optional parts of a save.
type SaveOptions struct {
	// Consumed lists KeyPackages and PSKs to delete in the same step (see
	// [JoinWithStore]).
	Consumed *Consumed
	// App are the application's own records to write in the same atomic
	// step (a nil Value deletes one): for instance the plaintext of the
	// message just decrypted, or the ciphertext of the message about to be
	// sent (its outbox entry), so that a crash cannot separate them from
	// the ratchet state they go with. Their keys are the application's;
	// they are stored under [AppRecordKey] and read with
	// [LoadAppRecords].
	App []Record
	// DiscardPendingCommit drops the stored pending commit (see
	// [SavePendingCommit]) although the group is still in the epoch it
	// commits from: the delivery service refused it for good. A pending
	// commit that was merged, or whose epoch another commit took, is
	// dropped without it.
	DiscardPendingCommit bool
}

// SaveGroup saves what changed in g since it was last saved to or opened
// from s, and opts' records, in one atomic [GroupStore.SaveGroupRecords]
// step. After decrypting a message it writes the few secret-tree entries
// the message changed: O(log n) bytes the first time a sender is heard
// from in an epoch, one entry afterwards. After a new epoch it writes the
// epoch's records and the ratchet tree chunks its commit changed.
//
// If another writer saved the group since (the revision differs), it
// returns an error matching [ErrConflict] and nothing is written: reopen
// the group with [OpenGroup]. On any other error, the store may or may
// not hold the save: reopen the group too.
func SaveGroup(ctx context.Context, s GroupStore, g *Group, opts *SaveOptions) error {
	return save(ctx, s, g, nil, opts)
}

// SavePendingCommit saves g as [SaveGroup] does, together with pc, a
// commit g created and has not merged: the epoch it leads to and the
// messages to send. Call it before sending pc.Commit. A crash then leaves
// the commit in the store, and [OpenGroup] gives it back with
// [Group.RecoveredCommit], so that the member can finish it in whichever
// way the delivery service decided. The group's current epoch is not
// replaced until the commit is merged: a commit the delivery service
// refuses leaves nothing behind (no fork), and one it accepts is never
// lost (nobody stuck).
//
// The pending commit stays stored until a save after
// [Group.MergePendingCommit] (which makes its epoch the current one), a
// save after merging another commit of the same epoch, or a save with
// [SaveOptions.DiscardPendingCommit].
func SavePendingCommit(ctx context.Context, s GroupStore, g *Group, pc *PendingCommit, opts *SaveOptions) error {
	if pc == nil {
		return errors.New("mls: no pending commit")
	}
	return save(ctx, s, g, pc, opts)
}

func save(ctx context.Context, s GroupStore, g *Group, pc *PendingCommit, opts *SaveOptions) error {
	if g == nil || g.state == nil {
		return errors.New("mls: saving an uninitialized group")
	}
	if opts == nil {
		opts = &SaveOptions{}
	}
	p := g.persist()
	step, err := g.records(p, pc, opts.DiscardPendingCommit)
	if err != nil {
		return err
	}
	for _, r := range opts.App {
		step.writes = append(step.writes, Record{Key: AppRecordKey(r.Key), Value: r.Value})
	}
	rev, err := s.SaveGroupRecords(ctx, g.GroupID(), p.revision, step.writes, opts.Consumed)
	for _, w := range step.writes {
		if len(w.Key) > 0 && w.Key[0] != keyApp && w.Key[0] != keyChunk && w.Key[0] != keyEpoch && w.Key[0] != keyProposal {
			clear(w.Value) // secrets
		}
	}
	if err != nil {
		return fmt.Errorf("mls: saving group: %w", err)
	}
	p.revision = rev
	for _, f := range step.apply {
		f()
	}
	if pc != nil {
		p.recovered = nil
	}
	return nil
}

// OpenGroup loads the group groupID from s. The group's protocol settings
// (wire format policy, padding, windows, limits: see [Group.SetConfig]) are
// those saved with it; cfg supplies the hooks (Now, PSKs, the validation
// and policy functions), and its protocol settings apply only to a group
// saved before settings were stored. cfg may be nil. It decodes only what
// the next operation needs: the group's head record, the kept epochs'
// secrets and their secret-tree entries. The ratchet tree stays encoded until an
// operation needs more than a sender's leaf (a commit, a proposal,
// [Group.Members]); decrypting an application message decodes the one
// chunk of 32 nodes that holds the sender's leaf, and the whole tree is
// checked against the GroupContext's tree hash when it is decoded.
//
// If the store holds a commit this member stored with [SavePendingCommit]
// and had not resolved, [Group.RecoveredCommit] returns it. Errors match
// [ErrNotFound] if nothing is stored, and [ErrInvalidState] for records
// this package did not write.
func OpenGroup(ctx context.Context, s GroupStore, groupID []byte, cfg *Config) (*Group, error) {
	sg, err := s.LoadGroupRecords(ctx, groupID)
	if err != nil {
		return nil, err
	}
	g, err := restoreGroup(sg.Records, sg.Revision, cfg)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(g.GroupID(), groupID) {
		return nil, fmt.Errorf("%w: records of another group", ErrInvalidState)
	}
	return g, nil
}

// LoadAppRecords returns the application records stored with the group
// groupID (see [SaveOptions.App]), with the keys the application gave.
func LoadAppRecords(ctx context.Context, s GroupStore, groupID []byte) ([]Record, error) {
	sg, err := s.LoadGroupRecords(ctx, groupID)
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, r := range sg.Records {
		if len(r.Key) > 0 && r.Key[0] == keyApp {
			out = append(out, Record{Key: r.Key[1:], Value: r.Value})
		}
	}
	return out, nil
}

// RecoveredCommit returns the commit that [OpenGroup] found stored by
// [SavePendingCommit] and not yet resolved, or nil. The member created it
// and may have sent it before a crash. Ask the delivery service which
// commit, if any, it accepted for the group's current epoch:
//   - this one ([PendingCommit.Is]): merge it with
//     [Group.MergePendingCommit], save, and send its Welcome, if any;
//   - another one: save with [SaveOptions.DiscardPendingCommit] (or
//     process and merge the other one, then save), and carry on;
//   - none yet: send pc.Commit again (the same bytes, so nothing is
//     encrypted twice) and continue as after [SavePendingCommit].
func (g *Group) RecoveredCommit() *PendingCommit {
	if g.store == nil || g.store.recovered == nil {
		return nil
	}
	pc := g.store.recovered
	if pc.staged == nil || pc.staged.fromEpoch != g.Epoch() {
		return nil
	}
	return pc
}

// Is reports whether msg is this pending commit's commit message, as the
// delivery service returns it.
func (p *PendingCommit) Is(msg *MLSMessage) bool {
	if p == nil || p.Commit == nil || msg == nil {
		return false
	}
	a, err1 := p.Commit.Bytes()
	b, err2 := msg.Bytes()
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}
