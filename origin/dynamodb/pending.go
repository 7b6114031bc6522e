package dynamodb

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// pendingShards is how many partitions hold the notes of publishes in
// flight, spread by key, so that noting and clearing (two writes per
// publish) never concentrate on one partition.
const pendingShards = 16

var _ origin.Pending = (*Store)(nil)

// keyShard spreads ns/key over n shards.
func keyShard(ns, key string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(ns))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

func pendingPK(shard int) string { return fmt.Sprintf("pending#%02d", shard) }

func pendingItem(c record.Change) map[string]types.AttributeValue {
	item := itemKey(pendingPK(keyShard(c.Namespace, c.Key, pendingShards)), logSK(c))
	if c.Tombstone {
		item[attrTomb] = &types.AttributeValueMemberBOOL{Value: true}
	}
	return item
}

// PutPending implements origin.Pending: one PutItem, shaped like a change
// log item.
func (s *Store) PutPending(ctx context.Context, c record.Change) error {
	if err := origin.CheckChange(c); err != nil {
		return err
	}
	what := fmt.Sprintf("%s/%s@%s", c.Namespace, c.Key, c.Version)
	if _, err := s.client.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(s.table), Item: pendingItem(c)}); err != nil {
		return s.fail(ctx, "put pending", what, err)
	}
	return nil
}

// DeletePending implements origin.Pending: one DeleteItem.
func (s *Store) DeletePending(ctx context.Context, c record.Change) error {
	if err := origin.CheckChange(c); err != nil {
		return err
	}
	what := fmt.Sprintf("%s/%s@%s", c.Namespace, c.Key, c.Version)
	item := pendingItem(c)
	_, err := s.client.DeleteItem(ctx, &ddb.DeleteItemInput{
		TableName: aws.String(s.table),
		Key:       map[string]types.AttributeValue{attrPK: item[attrPK], attrSK: item[attrSK]},
	})
	if err != nil {
		return s.fail(ctx, "delete pending", what, err)
	}
	return nil
}

// ListPending implements origin.Pending: one Query per shard.
func (s *Store) ListPending(ctx context.Context, limit int) ([]record.Change, error) {
	var out []record.Change
	for shard := 0; shard < pendingShards; shard++ {
		if limit > 0 && len(out) >= limit {
			break
		}
		err := s.query(ctx, "list pending", &ddb.QueryInput{
			// Every note's sort key is at least "0" (a hex version);
			// naming #sk keeps the query's attribute names all used.
			KeyConditionExpression:    aws.String("#pk = :pk AND #sk >= :from"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str(pendingPK(shard)), ":from": str("0")},
		}, 0, func(item map[string]types.AttributeValue) bool {
			c, err := parseLogItem(item)
			if err != nil {
				s.logger.Warn("dynamodb origin: ignoring a malformed pending note", "table", s.table, "err", err)
				return true
			}
			out = append(out, c)
			return limit <= 0 || len(out) < limit
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
