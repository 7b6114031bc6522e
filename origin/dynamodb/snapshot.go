package dynamodb

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

const (
	// snapPointerSK is the sort key of a namespace's snapshot pointer.
	snapPointerSK = "cur"
	// snapChunkSize is the most snapshot bytes one item holds, leaving room
	// under MaxItemSize for the key and the other attributes.
	snapChunkSize = 350 << 10
	// snapChunksPerBatch keeps one BatchWriteItem of chunks (base64 in
	// JSON) well under DynamoDB's 16 MB request limit.
	snapChunksPerBatch = 10
	// snapReadAttempts bounds GetSnapshot's restarts when the generation it
	// reads is replaced under it.
	snapReadAttempts = 3
)

func snapPK(ns string) string { return "snap#" + ns }

func chunkPrefix(gen string) string { return "gen#" + gen + "#" }

func chunkSK(gen string, i int) string { return fmt.Sprintf("%s%06d", chunkPrefix(gen), i) }

// newGeneration names a new chunk generation, unique across writers.
func newGeneration() string {
	return fmt.Sprintf("%x-%08x", time.Now().UnixNano(), rand.Uint32())
}

var (
	_ origin.SnapshotParts  = (*Store)(nil)
	_ origin.SnapshotOpener = (*Store)(nil)
)

// partSnapshots gives Store its PutSnapshot, GetSnapshot and OpenSnapshot
// over its snapshot parts (origin.PartSnapshots).
type partSnapshots = origin.PartSnapshots

// partSK is the sort key of the pointer item of part name: the main object
// is "cur", the others "part#<name>".
func partSK(name string) string {
	if name == "" {
		return snapPointerSK
	}
	return "part#" + name
}

// PutSnapshotPart implements origin.SnapshotParts. An object that fits one
// item is written inline in its pointer item; a larger one as chunk items of
// a new generation, then the pointer, then the old generation's chunks are
// deleted.
func (s *Store) PutSnapshotPart(ctx context.Context, ns, name string, b []byte) error {
	if err := origin.CheckPartName(ns, name); err != nil {
		return err
	}
	what := "snapshot " + ns + " part " + partSK(name)
	if err := ctx.Err(); err != nil {
		return s.fail(ctx, "put", what, err)
	}
	pk := snapPK(ns)
	ptr := itemKey(pk, partSK(name))
	ptr[attrSize] = num(uint64(len(b)))
	var gen string
	if len(b) <= snapChunkSize {
		ptr[attrData] = &types.AttributeValueMemberB{Value: b}
		ptr[attrChunks] = num(0)
	} else {
		gen = newGeneration()
		var puts []types.WriteRequest
		for off := 0; off < len(b); off += snapChunkSize {
			item := itemKey(pk, chunkSK(gen, len(puts)))
			item[attrData] = &types.AttributeValueMemberB{Value: b[off:min(off+snapChunkSize, len(b))]}
			puts = append(puts, types.WriteRequest{PutRequest: &types.PutRequest{Item: item}})
		}
		if err := s.batchWrite(ctx, "put "+what+" chunks", puts, snapChunksPerBatch); err != nil {
			return err
		}
		ptr[attrGen] = str(gen)
		ptr[attrChunks] = num(uint64(len(puts)))
	}
	out, err := s.client.PutItem(ctx, &ddb.PutItemInput{
		TableName:    aws.String(s.table),
		Item:         ptr,
		ReturnValues: types.ReturnValueAllOld,
	})
	if err != nil {
		// The new chunks stay: the pointer may have been written after all.
		return s.fail(ctx, "put", what, err)
	}
	s.deleteChunks(ctx, ns, what, out.Attributes, gen)
	return nil
}

// deleteChunks deletes the chunks of the generation a replaced or deleted
// pointer item named, unless it is keep. Failing costs storage, not
// correctness: it is logged.
func (s *Store) deleteChunks(ctx context.Context, ns, what string, old map[string]types.AttributeValue, keep string) {
	oldGen, _ := getString(old, attrGen)
	oldN, _ := getNum(old, attrChunks)
	if oldGen == "" || oldGen == keep || oldN == 0 {
		return
	}
	pk := snapPK(ns)
	dels := make([]types.WriteRequest, 0, min(oldN, 1<<20))
	for i := 0; i < int(min(oldN, 1<<20)); i++ {
		dels = append(dels, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: itemKey(pk, chunkSK(oldGen, i))}})
	}
	if err := s.batchWrite(ctx, "delete replaced "+what+" chunks", dels, 25); err != nil {
		s.logger.Warn("dynamodb origin: replaced snapshot's chunks not deleted", "table", s.table, "namespace", ns, "generation", oldGen, "err", err)
	}
}

// DeleteSnapshotPart implements origin.SnapshotParts.
func (s *Store) DeleteSnapshotPart(ctx context.Context, ns, name string) error {
	if err := origin.CheckPartName(ns, name); err != nil {
		return err
	}
	what := "snapshot " + ns + " part " + partSK(name)
	out, err := s.client.DeleteItem(ctx, &ddb.DeleteItemInput{
		TableName:    aws.String(s.table),
		Key:          itemKey(snapPK(ns), partSK(name)),
		ReturnValues: types.ReturnValueAllOld,
	})
	if err != nil {
		return s.fail(ctx, "delete", what, err)
	}
	s.deleteChunks(ctx, ns, what, out.Attributes, "")
	return nil
}

// GetSnapshotPart implements origin.SnapshotParts: one GetItem of the
// pointer, and for a chunked object one Query of its generation's chunks.
func (s *Store) GetSnapshotPart(ctx context.Context, ns, name string) (io.ReadCloser, error) {
	if err := origin.CheckPartName(ns, name); err != nil {
		return nil, err
	}
	what := "snapshot " + ns + " part " + partSK(name)
	if err := ctx.Err(); err != nil {
		return nil, s.fail(ctx, "get", what, err)
	}
	var lastGen string
	for attempt := 0; ; attempt++ {
		out, err := s.client.GetItem(ctx, &ddb.GetItemInput{
			TableName:      aws.String(s.table),
			Key:            itemKey(snapPK(ns), partSK(name)),
			ConsistentRead: aws.Bool(true),
		})
		if err != nil {
			return nil, s.fail(ctx, "get", what, err)
		}
		if len(out.Item) == 0 {
			return nil, fmt.Errorf("dynamodb table %s: %s: %w", s.table, what, origin.ErrNotFound)
		}
		corrupt := func(format string, args ...any) error {
			return fmt.Errorf("dynamodb table %s: %s: %w: %s", s.table, what, record.ErrCorrupt, fmt.Sprintf(format, args...))
		}
		size, ok := getNum(out.Item, attrSize)
		if !ok || size > record.MaxSnapshotSize {
			return nil, corrupt("pointer has no valid %q attribute", attrSize)
		}
		b, inline := getBytes(out.Item, attrData)
		if !inline {
			gen, _ := getString(out.Item, attrGen)
			n, ok := getNum(out.Item, attrChunks)
			if gen == "" || !ok || n == 0 {
				return nil, corrupt("pointer names no chunk generation")
			}
			var complete bool
			b, complete, err = s.readChunks(ctx, ns, gen, int(min(n, 1<<20)), int(size))
			if err != nil {
				return nil, err
			}
			if !complete {
				// Replaced and deleted under us: read the pointer again.
				// The same generation missing chunks twice is damage.
				if gen == lastGen || attempt+1 >= snapReadAttempts {
					return nil, corrupt("generation %s is missing chunks of %d", gen, n)
				}
				lastGen = gen
				continue
			}
		}
		if uint64(len(b)) != size {
			return nil, corrupt("%d bytes, pointer says %d", len(b), size)
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
}

// readChunks reassembles the n chunks of generation gen; complete is false
// when some are missing.
func (s *Store) readChunks(ctx context.Context, ns, gen string, n, size int) (b []byte, complete bool, err error) {
	// size and n come from the pointer: bound what they make us allocate.
	b = make([]byte, 0, min(size, n*snapChunkSize, 64<<20))
	next := 0
	bad := false
	prefix := chunkPrefix(gen)
	err = s.query(ctx, "get snapshot "+ns+" chunks", &ddb.QueryInput{
		KeyConditionExpression: aws.String("#pk = :pk AND begins_with(#sk, :gen)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(snapPK(ns)), ":gen": str(prefix),
		},
	}, 0, func(item map[string]types.AttributeValue) bool {
		sk, _ := getString(item, attrSK)
		i, err := strconv.Atoi(strings.TrimPrefix(sk, prefix))
		d, ok := getBytes(item, attrData)
		if err != nil || i != next || !ok || next >= n {
			bad = true
			return false
		}
		b = append(b, d...)
		next++
		return true
	})
	if err != nil {
		return nil, false, err
	}
	return b, !bad && next == n, nil
}
