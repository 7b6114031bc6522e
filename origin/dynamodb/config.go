package dynamodb

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/dataplane/dataplane/origin/awsconn"
	"github.com/dataplane/dataplane/origin/internal/awsapi"
)

// Defaults and limits for Config fields.
const (
	DefaultLogShards = 8
	// MaxLogShards bounds Config.LogShards: every log read costs one Query
	// per shard of each bucket it visits.
	MaxLogShards = 64
)

// MaxItemSize is DynamoDB's limit on one item: attribute names and values
// together.
const MaxItemSize = 400 << 10

// service is what the shared AWS code says for this store.
var service = awsapi.Service{Name: "dynamodb", ExampleEndpoint: "http://127.0.0.1:4567", Container: "Table", MissingCode: "ResourceNotFoundException"}

// Config says which table a Store uses and how it reaches it.
type Config struct {
	// Table is the table's name (3 to 255 of [A-Za-z0-9_.-]). Required.
	// CreateTable makes it with the expected key schema.
	Table string
	// Conn says how the Store reaches the server: region, endpoint,
	// credentials, HTTP client and retries, as for every AWS store.
	// Conn.MaxRetries also bounds how often the Store resends the writes a
	// BatchWriteItem leaves unprocessed.
	awsconn.Conn
	// LogShards is how many partitions the change log of one bucket is
	// spread over (see the package documentation); 0 means
	// DefaultLogShards. It applies to buckets this Store opens: a bucket
	// keeps the shard count it was opened with (recorded in its marker),
	// so writers and readers with different settings still agree.
	LogShards int
	// Logger receives warnings (a change log item that does not parse, a
	// replaced snapshot whose chunks could not be deleted); nil means
	// slog.Default().
	Logger *slog.Logger
}

// validate checks c and fills in defaults.
func (c *Config) validate() error {
	if c.Table == "" {
		return errors.New("dynamodb: Config.Table is required")
	}
	if len(c.Table) < 3 || len(c.Table) > 255 {
		return fmt.Errorf("dynamodb: Config.Table %q: a table name is 3 to 255 characters", c.Table)
	}
	for i := 0; i < len(c.Table); i++ {
		if ch := c.Table[i]; !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-' || ch == '.') {
			return fmt.Errorf("dynamodb: Config.Table %q: character %q not allowed (use A-Z, a-z, 0-9, '_', '-', '.')", c.Table, ch)
		}
	}
	if err := service.Check(&c.Conn); err != nil {
		return err
	}
	if c.LogShards == 0 {
		c.LogShards = DefaultLogShards
	}
	if c.LogShards < 1 || c.LogShards > MaxLogShards {
		return fmt.Errorf("dynamodb: Config.LogShards %d not in [1, %d]", c.LogShards, MaxLogShards)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}
