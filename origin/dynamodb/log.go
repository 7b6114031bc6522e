package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dataplane/dataplane/internal/tick"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/internal/awsapi"
	"github.com/dataplane/dataplane/record"
)

// bucketBits is how many low bits of a version one log bucket spans: the 16
// logical bits plus 2^22 ms (about 70 minutes) of physical time.
const bucketBits = 16 + 22

// Items of the log's metadata partition.
const (
	metaPK        = "logmeta"
	horizonSK     = "horizon"
	bucketPrefix  = "bucket#"
	bucketLastSK  = bucketPrefix + "g" // sorts after every bucket#<hex16>
	maxKnownBucks = 64
)

// bucketOf returns the first version of v's log bucket.
func bucketOf(v record.Version) uint64 { return uint64(v) &^ (1<<bucketBits - 1) }

func hex16(v uint64) string { return fmt.Sprintf("%016x", v) }

// logPK is the partition key of shard `shard` of a bucket spread over
// `shards` partitions. A bucket with one shard (every bucket written before
// sharding) keeps the original unsharded key.
func logPK(bucket uint64, shards, shard int) string {
	if shards <= 1 {
		return "log#" + hex16(bucket)
	}
	return fmt.Sprintf("log#%s#%02d", hex16(bucket), shard)
}

// attrShards on a bucket marker is the bucket's shard count; a marker
// without it is a bucket of one shard.
const attrShards = "shards"

func bucketSK(bucket uint64) string { return bucketPrefix + hex16(bucket) }

// logSK is a change's sort key: version first, so a bucket sorts by version,
// then namespace and key, so distinct changes with one version do not
// collide and the same change always has the same item.
func logSK(c record.Change) string {
	return c.Version.String() + "#" + c.Namespace + "#" + c.Key
}

// parseLogItem turns a log item back into a change.
func parseLogItem(item map[string]types.AttributeValue) (record.Change, error) {
	sk, _ := getString(item, attrSK)
	if len(sk) < 17 || sk[16] != '#' {
		return record.Change{}, fmt.Errorf("%w: log item %q: bad sort key", record.ErrCorrupt, sk)
	}
	v, err := strconv.ParseUint(sk[:16], 16, 64)
	if err != nil {
		return record.Change{}, fmt.Errorf("%w: log item %q: bad version", record.ErrCorrupt, sk)
	}
	ns, key, ok := strings.Cut(sk[17:], "#")
	if !ok {
		return record.Change{}, fmt.Errorf("%w: log item %q: no key", record.ErrCorrupt, sk)
	}
	c := record.Change{Namespace: ns, Key: key, Version: record.Version(v)}
	if t, ok := item[attrTomb].(*types.AttributeValueMemberBOOL); ok {
		c.Tombstone = t.Value
	}
	if b, ok := item[attrSeal].(*types.AttributeValueMemberB); ok {
		seal, err := record.ParseSeal(b.Value)
		if err != nil || len(b.Value) != record.SealLen {
			return record.Change{}, fmt.Errorf("%w: log item %q: bad seal", record.ErrCorrupt, sk)
		}
		c.Seal = seal
	}
	if err := origin.CheckChange(c); err != nil {
		return record.Change{}, fmt.Errorf("%w: log item %q: %w", record.ErrCorrupt, sk, err)
	}
	return c, nil
}

// AppendLog implements origin.Store: the bucket's marker (once per bucket
// per Store), then the entry, each one PutItem. The entry goes to the shard
// of its key (keyShard), so one change always lands in the same item.
func (s *Store) AppendLog(ctx context.Context, c record.Change) error {
	if err := origin.CheckChange(c); err != nil {
		return err
	}
	what := fmt.Sprintf("%s/%s@%s", c.Namespace, c.Key, c.Version)
	if err := ctx.Err(); err != nil {
		return s.fail(ctx, "append log", what, err)
	}
	// The marker goes first: an entry whose bucket nobody lists would be
	// invisible to ReadLog, a listed empty bucket costs one Query a shard.
	b := bucketOf(c.Version)
	shards, err := s.openBucket(ctx, b, what)
	if err != nil {
		return err
	}
	item := itemKey(logPK(b, shards, keyShard(c.Namespace, c.Key, shards)), logSK(c))
	if c.Tombstone {
		item[attrTomb] = &types.AttributeValueMemberBOOL{Value: true}
	}
	if c.Seal != nil {
		item[attrSeal] = &types.AttributeValueMemberB{Value: record.AppendSeal(nil, c.Seal)}
	}
	if _, err := s.client.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(s.table), Item: item}); err != nil {
		return s.fail(ctx, "append log", what, err)
	}
	return nil
}

// openBucket returns the shard count of bucket b, writing its marker with
// this Store's LogShards if no writer has yet. The marker is written only if
// absent, so the first writer of a bucket fixes its shard count for all.
func (s *Store) openBucket(ctx context.Context, b uint64, what string) (int, error) {
	if n, ok := s.knownBucket(b); ok {
		return n, nil
	}
	marker := itemKey(metaPK, bucketSK(b))
	marker[attrShards] = num(uint64(s.logShards))
	_, err := s.client.PutItem(ctx, &ddb.PutItemInput{
		TableName:                aws.String(s.table),
		Item:                     marker,
		ConditionExpression:      aws.String("attribute_not_exists(#pk)"),
		ExpressionAttributeNames: map[string]string{"#pk": attrPK},
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case err == nil:
		s.rememberBucket(b, s.logShards)
		return s.logShards, nil
	case !errors.As(err, &ccf):
		return 0, s.fail(ctx, "append log (bucket marker)", what, err)
	}
	out, err := s.client.GetItem(ctx, &ddb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            itemKey(metaPK, bucketSK(b)),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return 0, s.fail(ctx, "append log (read bucket marker)", what, err)
	}
	n := markerShards(out.Item)
	s.rememberBucket(b, n)
	return n, nil
}

// markerShards reads a bucket marker's shard count: 1 when absent (a bucket
// written before sharding) or out of range.
func markerShards(item map[string]types.AttributeValue) int {
	n, ok := getNum(item, attrShards)
	if !ok || n < 1 || n > MaxLogShards {
		return 1
	}
	return int(n)
}

func (s *Store) knownBucket(b uint64) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.marked[b]
	return n, ok
}

func (s *Store) rememberBucket(b uint64, shards int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.marked) >= maxKnownBucks {
		clear(s.marked)
	}
	s.marked[b] = shards
}

// ReadLog implements origin.Store: one Query of the bucket markers from
// after's bucket on, then, bucket by bucket until limit changes are read,
// one Query per shard (each for at most the changes still wanted, so their
// merge in version order is a correct prefix of the log), then one GetItem
// of the horizon.
func (s *Store) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.fail(ctx, "read log", "", err)
	}
	var out []record.Change
	if after < math.MaxUint64 {
		from := after + 1
		buckets, err := s.listBuckets(ctx, bucketSK(bucketOf(from)), bucketLastSK)
		if err != nil {
			return nil, err
		}
		for _, b := range buckets {
			if limit > 0 && len(out) >= limit {
				break
			}
			out, err = s.readBucket(ctx, b, from, limit, out)
			origin.SortChanges(out)
			if limit > 0 && len(out) > limit {
				out = out[:limit]
			}
			if err != nil {
				return nil, err
			}
		}
	}
	// The horizon is read after the entries: TrimLog raises it before it
	// deletes anything, so if an entry we needed was deleted while we read,
	// this read sees the raised horizon.
	horizon, err := s.horizon(ctx)
	if err != nil {
		return nil, err
	}
	if origin.Truncated(after, horizon) {
		return nil, fmt.Errorf("dynamodb table %s: read log after %s, horizon %s: %w", s.table, after, horizon, origin.ErrLogTruncated)
	}
	origin.SortChanges(out)
	return out, nil
}

// logBucket is a log bucket as its marker describes it.
type logBucket struct {
	start  uint64 // first version
	shards int
}

// listBuckets lists the log buckets whose markers sort in [fromSK, toSK].
func (s *Store) listBuckets(ctx context.Context, fromSK, toSK string) ([]logBucket, error) {
	var out []logBucket
	err := s.query(ctx, "read log buckets", &ddb.QueryInput{
		KeyConditionExpression: aws.String("#pk = :pk AND #sk BETWEEN :from AND :to"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(metaPK), ":from": str(fromSK), ":to": str(toSK),
		},
	}, 0, func(item map[string]types.AttributeValue) bool {
		sk, _ := getString(item, attrSK)
		b, err := strconv.ParseUint(strings.TrimPrefix(sk, bucketPrefix), 16, 64)
		if err != nil || len(sk) != len(bucketPrefix)+16 {
			s.logger.Warn("dynamodb origin: ignoring a malformed log bucket marker", "table", s.table, "sk", sk)
			return true
		}
		out = append(out, logBucket{start: b, shards: markerShards(item)})
		return true
	})
	return out, err
}

// readBucket appends to out the changes of bucket b with versions from on:
// up to limit-len(out) from each shard (limit <= 0: no limit). The caller
// sorts and cuts the result.
func (s *Store) readBucket(ctx context.Context, b logBucket, from record.Version, limit int, out []record.Change) ([]record.Change, error) {
	want := limit - len(out)
	for shard := 0; shard < b.shards; shard++ {
		n := 0
		err := s.query(ctx, "read log", &ddb.QueryInput{
			KeyConditionExpression: aws.String("#pk = :pk AND #sk >= :from"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk": str(logPK(b.start, b.shards, shard)), ":from": str(from.String()),
			},
		}, want, func(item map[string]types.AttributeValue) bool {
			c, err := parseLogItem(item)
			if err != nil {
				// One damaged entry must not stop every follower of the log.
				s.logger.Warn("dynamodb origin: ignoring a malformed change log item", "table", s.table, "err", err)
				return true
			}
			out = append(out, c)
			n++
			return limit <= 0 || n < want
		})
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// query runs a strongly consistent Query over every page, passing each item
// to fn until fn returns false. pageHint, if positive, bounds the first
// page's size (later pages use the same bound).
func (s *Store) query(ctx context.Context, op string, in *ddb.QueryInput, pageHint int, fn func(map[string]types.AttributeValue) bool) error {
	in.TableName = aws.String(s.table)
	in.ConsistentRead = aws.Bool(true)
	in.ExpressionAttributeNames = keyNames
	if pageHint > 0 {
		in.Limit = aws.Int32(int32(min(pageHint, 1000)))
	}
	for {
		out, err := s.client.Query(ctx, in)
		if err != nil {
			return s.fail(ctx, op, "", err)
		}
		for _, item := range out.Items {
			if !fn(item) {
				return nil
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// horizon returns the version below which the log was trimmed (0: never).
func (s *Store) horizon(ctx context.Context) (record.Version, error) {
	out, err := s.client.GetItem(ctx, &ddb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            itemKey(metaPK, horizonSK),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return 0, s.fail(ctx, "read log horizon", "", err)
	}
	if len(out.Item) == 0 {
		return 0, nil
	}
	h, ok := getNum(out.Item, attrHorizon)
	if !ok {
		return 0, fmt.Errorf("dynamodb table %s: log horizon: %w: no numeric %q attribute", s.table, record.ErrCorrupt, attrHorizon)
	}
	return record.Version(h), nil
}

// TrimLog implements origin.Store: it raises the horizon (never lowers it),
// then deletes the entries below before and the markers of buckets wholly
// below it.
func (s *Store) TrimLog(ctx context.Context, before record.Version) error {
	if err := ctx.Err(); err != nil {
		return s.fail(ctx, "trim log", "", err)
	}
	if before == 0 {
		return nil
	}
	_, err := s.client.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       itemKey(metaPK, horizonSK),
		UpdateExpression:          aws.String("SET #hz = :h"),
		ConditionExpression:       aws.String("attribute_not_exists(#hz) OR #hz < :h"),
		ExpressionAttributeNames:  map[string]string{"#hz": attrHorizon},
		ExpressionAttributeValues: map[string]types.AttributeValue{":h": num(uint64(before))},
	})
	var ccf *types.ConditionalCheckFailedException
	if err != nil && !errors.As(err, &ccf) { // failed condition: already at or above
		return s.fail(ctx, "trim log (raise horizon)", before.String(), err)
	}
	buckets, err := s.listBuckets(ctx, bucketSK(0), bucketSK(bucketOf(before)))
	if err != nil {
		return err
	}
	for _, b := range buckets {
		var dels []types.WriteRequest
		for shard := 0; shard < b.shards; shard++ {
			err := s.query(ctx, "trim log", &ddb.QueryInput{
				KeyConditionExpression: aws.String("#pk = :pk AND #sk < :before"),
				ExpressionAttributeValues: map[string]types.AttributeValue{
					":pk": str(logPK(b.start, b.shards, shard)), ":before": str(before.String()),
				},
				ProjectionExpression: aws.String("#pk, #sk"),
			}, 0, func(item map[string]types.AttributeValue) bool {
				dels = append(dels, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: map[string]types.AttributeValue{attrPK: item[attrPK], attrSK: item[attrSK]}}})
				return true
			})
			if err != nil {
				return err
			}
		}
		// Entries first, then the marker: a marker without entries costs a
		// reader one Query a shard, entries without a marker would never be
		// trimmed.
		if b.start+(1<<bucketBits) <= uint64(before) {
			dels = append(dels, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: itemKey(metaPK, bucketSK(b.start))}})
		}
		if err := s.batchWrite(ctx, "trim log", dels, 25); err != nil {
			return err
		}
	}
	return nil
}

// batchWrite sends reqs in BatchWriteItem calls of at most per requests,
// resending what DynamoDB leaves unprocessed (it does so when throttling)
// with backoff, up to the Store's retry budget per batch.
func (s *Store) batchWrite(ctx context.Context, op string, reqs []types.WriteRequest, per int) error {
	for len(reqs) > 0 {
		n := min(per, len(reqs))
		pending := reqs[:n]
		reqs = reqs[n:]
		for attempt := 1; len(pending) > 0; attempt++ {
			out, err := s.client.BatchWriteItem(ctx, &ddb.BatchWriteItemInput{
				RequestItems: map[string][]types.WriteRequest{s.table: pending},
			})
			if err != nil {
				return s.fail(ctx, op, "", err)
			}
			pending = out.UnprocessedItems[s.table]
			if len(pending) == 0 {
				break
			}
			if attempt > awsapi.Retries(s.conn) {
				return fmt.Errorf("dynamodb %s table %s: %w: %d writes still unprocessed after %d attempts", op, s.table, origin.ErrUnavailable, len(pending), attempt)
			}
			if err := tick.Sleep(ctx, awsapi.Backoff(attempt, s.conn.RetryBaseDelay, s.conn.RetryMaxDelay)); err != nil {
				return s.fail(ctx, op, "", err)
			}
		}
	}
	return nil
}
