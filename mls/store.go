package mls

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
)

// This file defines the storage and transport interfaces the application
// implements. Protocol code never calls them: the application loads a
// group, feeds it messages, and saves what comes out.

// ErrConflict means a save lost a race: the stored group state is no longer
// the one the caller loaded (another writer saved a newer one), or a
// KeyPackage or PSK the save consumes is already gone. Nothing was changed.
// The caller reloads the group and starts over; a commit it created from
// the stale state must not be sent.
var ErrConflict = errors.New("mls: stored state changed concurrently")

// Record is one record of a group's stored state (see [GroupStore]): an
// opaque key and value. A nil Value in a write deletes the record.
// Records hold secrets; keep them encrypted at rest where the platform
// allows.
type Record struct {
	Key   []byte
	Value []byte
}

// StoredGroup is a group's records as a [GroupStore] holds them.
type StoredGroup struct {
	// Records are all the group's records, in any order.
	Records []Record
	// Revision counts the saves of the group: 1 after the first. It is the
	// optimistic-concurrency token of [GroupStore.SaveGroupRecords].
	Revision uint64
}

// Consumed lists what a step used up, to be deleted from the [KeyStore] in
// the same atomic save as the group state it led to, so that a crash
// cannot leave a joined group with its KeyPackage private key still stored
// (RFC 9420, §16.8), nor a spent one-time PSK usable again.
type Consumed struct {
	// KeyPackages are the references of KeyPackages whose private keys
	// were used, typically to join by Welcome. Last-resort KeyPackages
	// are not listed: they stay usable.
	KeyPackages []KeyPackageRef
	// PSKs are the IDs of external PSKs that were single-use.
	PSKs [][]byte
}

// GroupStore persists groups as records (see [SaveGroup] for which): the
// part of a group fixed for an epoch is written once per epoch, and what a
// message changes (secret-tree ratchets) is a few small records, so that
// saving after every message costs O(log n) bytes, not the group. The
// application implements it on its database; [MemoryStore] is an
// in-memory implementation. Implementations must be safe for concurrent
// use, also by several processes sharing one database. Most applications
// call [SaveGroup], [SavePendingCommit] and [OpenGroup] rather than these
// methods.
type GroupStore interface {
	// LoadGroupRecords returns every record of the group groupID and its
	// revision, or an error matching [ErrNotFound] if nothing is stored.
	LoadGroupRecords(ctx context.Context, groupID []byte) (*StoredGroup, error)
	// SaveGroupRecords applies writes (puts, and deletes for a nil
	// Value) to the records of groupID and deletes what consumed lists
	// (which may be nil) from the key store, in one atomic step: after a
	// crash, either all of it happened or none. It succeeds only if the
	// stored revision is still prevRevision (0 if nothing is stored: the
	// caller created or joined the group) and everything consumed is
	// still there; otherwise it changes nothing and returns an error
	// matching [ErrConflict]. Of concurrent saves from the same revision
	// exactly one succeeds. It returns the new revision. Deleting a
	// record that does not exist is not an error. The store must not
	// keep writes' slices.
	SaveGroupRecords(ctx context.Context, groupID []byte, prevRevision uint64, writes []Record, consumed *Consumed) (revision uint64, err error)
	// DeleteGroup deletes every record of groupID if its revision is
	// still prevRevision, for a member that left the group, and returns
	// an error matching [ErrConflict] otherwise.
	DeleteGroup(ctx context.Context, groupID []byte, prevRevision uint64) error
}

// KeyStore holds a client's KeyPackage private keys until they are used,
// and its external PSKs. The application implements it, usually on the
// same database as its [GroupStore] so that [GroupStore.SaveGroupRecords]
// can delete consumed keys atomically; [MemoryStore] is an in-memory
// implementation. Its contents must be kept secret.
type KeyStore interface {
	// PutKeyPackage stores kp under its reference (see [KeyPackage.Ref]),
	// before kp.KeyPackage is published.
	PutKeyPackage(ctx context.Context, kp *KeyPackagePrivate) error
	// KeyPackagePrivate returns the KeyPackage with private keys stored
	// under ref, or an error matching [ErrNotFound].
	KeyPackagePrivate(ctx context.Context, ref KeyPackageRef) (*KeyPackagePrivate, error)
	// FindKeyPackage returns the first of refs under which a KeyPackage
	// is stored, with its private keys, or an error matching
	// [ErrNotFound] if none is. It is one lookup, however many refs: a
	// Welcome has one per new member (RFC 9420, §12.4.3.1), and only one
	// is this client's.
	FindKeyPackage(ctx context.Context, refs []KeyPackageRef) (KeyPackageRef, *KeyPackagePrivate, error)
	// PutPSK stores the external PSK secret with the psk_id id.
	PutPSK(ctx context.Context, id, secret []byte) error
	// PSK returns the external PSK with the psk_id id, or an error
	// matching [ErrNotFound].
	PSK(ctx context.Context, id []byte) ([]byte, error)
}

// Transport is the client side of the delivery service (RFC 9420, §3): the
// application implements it over its network protocol. Protocol code never
// calls it; the application sends what [Group] methods return.
type Transport interface {
	// Send delivers a message (application message, proposal or commit)
	// to every member of the group groupID. For a commit, success means
	// the delivery service accepted it as the one commit of its epoch;
	// an error matching [ErrConflict] means another commit of that epoch
	// came first, so the sender processes that one instead of merging its
	// own. The same bytes sent twice must be delivered once: after a
	// crash, the persistence protocol (package documentation) sends a
	// stored commit or outbox message again.
	Send(ctx context.Context, groupID []byte, msg *MLSMessage) error
	// SendWelcome delivers a Welcome to the new members it names.
	SendWelcome(ctx context.Context, welcome *MLSMessage) error
	// FetchKeyPackages returns one KeyPackage of each client of the user
	// with the given identity, for adding them to a group. The delivery
	// service hands each KeyPackage out once, except last-resort ones.
	FetchKeyPackages(ctx context.Context, identity []byte) ([]*KeyPackage, error)
	// PublishGroupInfo publishes the GroupInfo of the group's current
	// epoch, for new members joining by external commit.
	PublishGroupInfo(ctx context.Context, groupID []byte, groupInfo *MLSMessage) error
}

// JoinWithStore joins a group from a Welcome (see [Join]) with the
// KeyPackage private keys found in keys, with one [KeyStore.FindKeyPackage]
// lookup, and reports what the join consumed: the KeyPackage, unless it is
// a last-resort one. Save the new group with [SaveGroup] and
// [SaveOptions.Consumed], so that the KeyPackage private key is deleted
// exactly when the group state exists.
//
// If keys also implements [GroupStore] (as [MemoryStore] does) and
// opts.GroupExists is nil, a Welcome for a group ID that keys holds
// records of is refused with [ErrGroupExists] (RFC 9420, §12.4.3).
func JoinWithStore(ctx context.Context, welcome *MLSMessage, keys KeyStore, opts *JoinOptions, cfg *Config) (*Group, *Consumed, error) {
	if welcome == nil || welcome.Welcome == nil {
		return nil, nil, fmt.Errorf("%w: not a Welcome", ErrUnsupported)
	}
	if gs, ok := keys.(GroupStore); ok && (opts == nil || opts.GroupExists == nil) {
		o := JoinOptions{}
		if opts != nil {
			o = *opts
		}
		o.GroupExists = func(groupID []byte) (bool, error) {
			_, err := gs.LoadGroupRecords(ctx, groupID)
			if errors.Is(err, ErrNotFound) {
				return false, nil
			}
			return err == nil, err
		}
		opts = &o
	}
	refs := make([]KeyPackageRef, len(welcome.Welcome.Secrets))
	for i := range welcome.Welcome.Secrets {
		refs[i] = welcome.Welcome.Secrets[i].NewMember
	}
	ref, kp, err := keys.FindKeyPackage(ctx, refs)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, ErrNotMember
	}
	if err != nil {
		return nil, nil, err
	}
	g, err := Join(welcome, kp, opts, cfg)
	if err != nil {
		return nil, nil, err
	}
	consumed := &Consumed{}
	if !kp.KeyPackage.IsLastResort() {
		consumed.KeyPackages = append(consumed.KeyPackages, ref)
	}
	return g, consumed, nil
}

// StorePSKs adapts a [KeyStore] to the [PSKStore] of [Config.PSKs], for
// external PSKs. Resumption PSKs of epochs the group no longer keeps are
// not found. ctx is used for every lookup.
func StorePSKs(ctx context.Context, keys KeyStore) PSKStore { return storePSKs{ctx, keys} }

type storePSKs struct {
	ctx  context.Context
	keys KeyStore
}

func (s storePSKs) ExternalPSK(id []byte) ([]byte, error) { return s.keys.PSK(s.ctx, id) }

func (s storePSKs) ResumptionPSK(groupID []byte, epoch uint64) ([]byte, error) {
	return nil, fmt.Errorf("%w: resumption PSK of epoch %d", ErrNotFound, epoch)
}

// MemoryStore is an in-memory [GroupStore] and [KeyStore], safe for
// concurrent use. Its contents are lost when the process ends: it is for
// tests and as a model for real implementations.
type MemoryStore struct {
	mu          sync.Mutex
	groups      map[string]*memoryGroup
	keyPackages map[string][]byte
	psks        map[string][]byte
}

type memoryGroup struct {
	revision uint64
	records  map[string][]byte
}

// NewMemoryStore returns an empty [MemoryStore].
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{
		groups:      make(map[string]*memoryGroup),
		keyPackages: make(map[string][]byte),
		psks:        make(map[string][]byte),
	}
}

// LoadGroupRecords implements [GroupStore]. The caller owns the returned
// records.
func (m *MemoryStore) LoadGroupRecords(ctx context.Context, groupID []byte) (*StoredGroup, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mg, ok := m.groups[string(groupID)]
	if !ok {
		return nil, fmt.Errorf("%w: group state", ErrNotFound)
	}
	out := &StoredGroup{Revision: mg.revision, Records: make([]Record, 0, len(mg.records))}
	for k, v := range mg.records {
		out.Records = append(out.Records, Record{Key: []byte(k), Value: bytes.Clone(v)})
	}
	return out, nil
}

// SaveGroupRecords implements [GroupStore]. It keeps copies of the values
// and erases the replaced and deleted ones.
func (m *MemoryStore) SaveGroupRecords(ctx context.Context, groupID []byte, prevRevision uint64, writes []Record, consumed *Consumed) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mg, ok := m.groups[string(groupID)]
	var rev uint64
	if ok {
		rev = mg.revision
	}
	if rev != prevRevision {
		return 0, fmt.Errorf("%w: group state is at revision %d, not %d", ErrConflict, rev, prevRevision)
	}
	if consumed != nil {
		for _, ref := range consumed.KeyPackages {
			if _, ok := m.keyPackages[string(ref)]; !ok {
				return 0, fmt.Errorf("%w: key package %x already consumed", ErrConflict, []byte(ref))
			}
		}
		for _, id := range consumed.PSKs {
			if _, ok := m.psks[string(id)]; !ok {
				return 0, fmt.Errorf("%w: PSK %x already consumed", ErrConflict, id)
			}
		}
		for _, ref := range consumed.KeyPackages {
			clear(m.keyPackages[string(ref)])
			delete(m.keyPackages, string(ref))
		}
		for _, id := range consumed.PSKs {
			clear(m.psks[string(id)])
			delete(m.psks, string(id))
		}
	}
	if !ok {
		mg = &memoryGroup{records: make(map[string][]byte, len(writes))}
		m.groups[string(groupID)] = mg
	}
	for _, w := range writes {
		if old, ok := mg.records[string(w.Key)]; ok {
			clear(old)
		}
		if w.Value == nil {
			delete(mg.records, string(w.Key))
		} else {
			mg.records[string(w.Key)] = bytes.Clone(w.Value)
		}
	}
	mg.revision = rev + 1
	return rev + 1, nil
}

// DeleteGroup implements [GroupStore].
func (m *MemoryStore) DeleteGroup(ctx context.Context, groupID []byte, prevRevision uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	mg, ok := m.groups[string(groupID)]
	if !ok || mg.revision != prevRevision {
		return fmt.Errorf("%w: group state changed or deleted", ErrConflict)
	}
	for _, v := range mg.records {
		clear(v)
	}
	delete(m.groups, string(groupID))
	return nil
}

// PutKeyPackage implements [KeyStore].
func (m *MemoryStore) PutKeyPackage(ctx context.Context, kp *KeyPackagePrivate) error {
	data, err := kp.Bytes()
	if err != nil {
		return err
	}
	ref, err := kp.KeyPackage.Ref()
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keyPackages[string(ref)] = data
	return nil
}

// KeyPackagePrivate implements [KeyStore].
func (m *MemoryStore) KeyPackagePrivate(ctx context.Context, ref KeyPackageRef) (*KeyPackagePrivate, error) {
	m.mu.Lock()
	data, ok := m.keyPackages[string(ref)]
	data = bytes.Clone(data)
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: key package %x", ErrNotFound, []byte(ref))
	}
	defer clear(data)
	return ParseKeyPackagePrivate(data)
}

// FindKeyPackage implements [KeyStore].
func (m *MemoryStore) FindKeyPackage(ctx context.Context, refs []KeyPackageRef) (KeyPackageRef, *KeyPackagePrivate, error) {
	m.mu.Lock()
	var ref KeyPackageRef
	var data []byte
	for _, r := range refs {
		if d, ok := m.keyPackages[string(r)]; ok {
			ref, data = r, bytes.Clone(d)
			break
		}
	}
	m.mu.Unlock()
	if data == nil {
		return nil, nil, fmt.Errorf("%w: key package", ErrNotFound)
	}
	defer clear(data)
	kp, err := ParseKeyPackagePrivate(data)
	if err != nil {
		return nil, nil, err
	}
	return ref, kp, nil
}

// PutPSK implements [KeyStore].
func (m *MemoryStore) PutPSK(ctx context.Context, id, secret []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.psks[string(id)] = bytes.Clone(secret)
	return nil
}

// PSK implements [KeyStore].
func (m *MemoryStore) PSK(ctx context.Context, id []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.psks[string(id)]
	if !ok {
		return nil, fmt.Errorf("%w: PSK %x", ErrNotFound, id)
	}
	return bytes.Clone(s), nil
}
