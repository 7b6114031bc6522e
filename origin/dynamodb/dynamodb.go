package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dataplane/dataplane/internal/tick"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/awsconn"
	"github.com/dataplane/dataplane/origin/internal/awsapi"
	"github.com/dataplane/dataplane/record"
)

// Store is an origin.Store in a DynamoDB table. It is safe for concurrent
// use, also by many processes sharing the table.
type Store struct {
	partSnapshots
	client *ddb.Client
	table  string
	logger *slog.Logger
	// conn paces the Store's own retries of the writes a BatchWriteItem
	// leaves unprocessed: checked, defaults filled in.
	conn awsconn.Conn

	// logShards is the shard count of the log buckets this Store opens.
	logShards int

	mu sync.Mutex // guards marked
	// marked maps the log buckets whose marker this Store has written or
	// read to their shard counts, so AppendLog writes each marker once
	// (bounded: cleared when large).
	marked map[uint64]int
}

var _ origin.Store = (*Store)(nil)

// New returns a Store for cfg. It validates cfg (a malformed Endpoint is an
// error naming it) but sends no request: the table must exist (see
// CreateTable), and an unreachable server shows up on the first call.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	client, err := awsapi.NewClient(ctx, service, cfg.Conn, ddb.NewFromConfig)
	if err != nil {
		return nil, err
	}
	s := &Store{client: client, table: cfg.Table, logShards: cfg.LogShards, conn: cfg.Conn, logger: cfg.Logger, marked: make(map[uint64]int)}
	s.partSnapshots = partSnapshots{Parts: s}
	return s, nil
}

// Table returns the table the store uses.
func (s *Store) Table() string { return s.table }

// Client returns the SDK client the store uses, for administration and
// tests (e.g. to damage an item behind the store's back).
func (s *Store) Client() *ddb.Client { return s.client }

// CreateTable creates the store's table with on-demand billing if it does
// not exist yet, and waits until it is active: for tests and development
// setups. An existing table with another key schema is an error.
func (s *Store) CreateTable(ctx context.Context) error {
	_, err := s.client.CreateTable(ctx, &ddb.CreateTableInput{
		TableName: aws.String(s.table),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(attrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(attrSK), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeRange},
		},
		BillingMode: types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return s.fail(ctx, "create table", "", err)
	}
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		out, err := s.client.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(s.table)})
		var nf *types.ResourceNotFoundException
		switch {
		case errors.As(err, &nf): // created a moment ago, not visible yet
		case err != nil:
			return s.fail(ctx, "describe table", "", err)
		default:
			if err := checkSchema(s.table, out.Table); err != nil {
				return err
			}
			if out.Table.TableStatus == types.TableStatusActive {
				return nil
			}
		}
		if err := tick.Sleep(ctx, delay); err != nil {
			return fmt.Errorf("dynamodb: table %q: waiting until active: %w", s.table, err)
		}
	}
}

// checkSchema reports whether a table has the key schema the store needs.
func checkSchema(table string, d *types.TableDescription) error {
	want := map[string]types.KeyType{attrPK: types.KeyTypeHash, attrSK: types.KeyTypeRange}
	ok := d != nil && len(d.KeySchema) == 2
	if ok {
		for _, k := range d.KeySchema {
			if want[aws.ToString(k.AttributeName)] != k.KeyType {
				ok = false
			}
		}
	}
	if !ok {
		return fmt.Errorf("dynamodb: table %q exists with another key schema; want partition key %q and sort key %q, both strings", table, attrPK, attrSK)
	}
	return nil
}

// Get implements origin.Store. It is one strongly consistent GetItem;
// ErrNotModified is decided here, after the read (DynamoDB has no
// conditional read).
func (s *Store) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	if err := record.ValidateKey(ns, key); err != nil {
		return record.Record{}, err
	}
	what := ns + "/" + key
	if err := ctx.Err(); err != nil {
		return record.Record{}, s.fail(ctx, "get", what, err)
	}
	out, err := s.client.GetItem(ctx, &ddb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            RecordKey(ns, key),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return record.Record{}, s.fail(ctx, "get", what, err)
	}
	if len(out.Item) == 0 {
		return record.Record{}, fmt.Errorf("dynamodb table %s: %s: %w", s.table, what, origin.ErrNotFound)
	}
	r, err := s.decodeRecord(ns, key, out.Item)
	if err != nil {
		return record.Record{}, err
	}
	if ifNewer != 0 && r.Version <= ifNewer {
		return record.Record{}, origin.ErrNotModified
	}
	return r, nil
}

// decodeRecord checks and decodes a record item of ns/key.
func (s *Store) decodeRecord(ns, key string, item map[string]types.AttributeValue) (record.Record, error) {
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("dynamodb table %s: %s/%s: %w: %s", s.table, ns, key, record.ErrCorrupt, fmt.Sprintf(format, args...))
	}
	b, ok := getBytes(item, attrRec)
	if !ok {
		return record.Record{}, corrupt("item has no binary %q attribute", attrRec)
	}
	ver, ok := getNum(item, attrVer)
	if !ok {
		return record.Record{}, corrupt("item has no numeric %q attribute", attrVer)
	}
	r, err := record.Unmarshal(b)
	if err != nil {
		return record.Record{}, fmt.Errorf("dynamodb table %s: %s/%s: %w", s.table, ns, key, err)
	}
	if r.Namespace != ns || r.Key != key {
		return record.Record{}, corrupt("item holds %s/%s", r.Namespace, r.Key)
	}
	if uint64(r.Version) != ver {
		return record.Record{}, corrupt("item's %s is %d but its record's version is %d", attrVer, ver, uint64(r.Version))
	}
	return r, nil
}

// CompareAndSwap implements origin.Store with one conditional PutItem.
func (s *Store) CompareAndSwap(ctx context.Context, rec record.Record, prev record.Version) error {
	if err := origin.CheckSwap(rec, prev); err != nil {
		return err
	}
	what := rec.Namespace + "/" + rec.Key
	if err := ctx.Err(); err != nil {
		return s.fail(ctx, "put", what, err)
	}
	b, err := record.Marshal(rec)
	if err != nil {
		return err
	}
	item := RecordKey(rec.Namespace, rec.Key)
	item[attrVer] = num(uint64(rec.Version))
	item[attrRec] = &types.AttributeValueMemberB{Value: b}
	if n := itemSize(item); n > MaxItemSize {
		return fmt.Errorf("%w: %s: item would be %d bytes, DynamoDB's limit is %d", record.ErrInvalid, what, n, MaxItemSize)
	}
	in := &ddb.PutItemInput{TableName: aws.String(s.table), Item: item}
	if prev == 0 {
		in.ConditionExpression = aws.String("attribute_not_exists(#pk)")
		in.ExpressionAttributeNames = map[string]string{"#pk": attrPK}
	} else {
		in.ConditionExpression = aws.String("#ver = :prev")
		in.ExpressionAttributeNames = map[string]string{"#ver": attrVer}
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":prev": num(uint64(prev))}
	}
	_, err = s.client.PutItem(ctx, in)
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		if prev == 0 {
			return fmt.Errorf("dynamodb table %s: %s: already exists: %w", s.table, what, origin.ErrConflict)
		}
		return fmt.Errorf("dynamodb table %s: %s: stored version is not %s: %w", s.table, what, prev, origin.ErrConflict)
	}
	if err != nil {
		return s.fail(ctx, "put", what, err)
	}
	return nil
}

// ServerTime returns the time in the Date header of a DescribeTable answer;
// a refused one (no dynamodb:DescribeTable permission) carries it too. It
// implements origin.Clock.
func (s *Store) ServerTime(ctx context.Context) (time.Time, error) {
	out, err := s.client.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(s.table)})
	if out == nil {
		out = new(ddb.DescribeTableOutput) // refused: the Date is in err
	}
	return awsapi.ServerTime(fmt.Sprintf("dynamodb: table %q", s.table), out.ResultMetadata, err)
}
