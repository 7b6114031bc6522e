package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/awsconn"
	"github.com/dataplane/dataplane/origin/internal/awsapi"
	"github.com/dataplane/dataplane/record"
)

// DefaultETagCacheSize is Config.ETagCacheSize's default.
const DefaultETagCacheSize = 10000

// service is what the shared AWS code says for this store.
var service = awsapi.Service{Name: "s3", ExampleEndpoint: "http://127.0.0.1:7070", Container: "Bucket", MissingCode: "NoSuchBucket"}

// Config says where a Store keeps its objects and how it reaches them.
type Config struct {
	// Bucket holds the objects. Required.
	Bucket string
	// Prefix starts every object name, so several stores can share a bucket.
	// Optional; end it with "/" (e.g. "tenant-a/").
	Prefix string
	// Conn says how the Store reaches the server: region, endpoint,
	// credentials, HTTP client and retries, as for every AWS store.
	awsconn.Conn
	// UsePathStyle addresses objects as <endpoint>/<bucket>/<name> rather
	// than <bucket>.<endpoint>/<name>. Most S3-compatible servers need it.
	UsePathStyle bool
	// ETagCacheSize bounds how many (version, ETag) pairs of recently read
	// or written records the Store remembers for 304 reads and one-request
	// swaps; 0 means DefaultETagCacheSize, negative disables it.
	ETagCacheSize int
	// Logger receives warnings (a change log object that does not parse);
	// nil means slog.Default().
	Logger *slog.Logger
}

// validate checks c and fills in defaults.
func (c *Config) validate() error {
	if c.Bucket == "" {
		return errors.New("s3: Config.Bucket is required")
	}
	if len(c.Prefix) > 256 || !utf8.ValidString(c.Prefix) || strings.ContainsFunc(c.Prefix, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("s3: Config.Prefix %q: want at most 256 bytes of UTF-8 without control characters", c.Prefix)
	}
	if err := service.Check(&c.Conn); err != nil {
		return err
	}
	if c.ETagCacheSize == 0 {
		c.ETagCacheSize = DefaultETagCacheSize
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Store is an origin.Store in an S3 bucket. It is safe for concurrent use,
// also by many processes sharing the bucket and prefix.
type Store struct {
	partSnapshots
	client *s3.Client
	bucket string
	prefix string
	logger *slog.Logger
	etags  *etagCache
	// horizon is the highest log horizon this Store has seen. Horizons only
	// rise, so an `after` it already truncates needs no request.
	horizon atomic.Uint64
}

var _ origin.Store = (*Store)(nil)

// New returns a Store for cfg. It validates cfg (a malformed Endpoint is an
// error naming it) but sends no request: the bucket must exist (see
// CreateBucket), and an unreachable server shows up on the first call.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	client, err := awsapi.NewClient(ctx, service, cfg.Conn, s3.NewFromConfig, func(o *s3.Options) {
		o.UsePathStyle = cfg.UsePathStyle
		// Records and snapshots carry their own CRC-32C; extra SDK
		// checksums only where S3 demands them (DeleteObjects).
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	if err != nil {
		return nil, err
	}
	s := &Store{
		client: client,
		bucket: cfg.Bucket,
		prefix: cfg.Prefix,
		logger: cfg.Logger,
		etags:  newETagCache(cfg.ETagCacheSize),
	}
	s.partSnapshots = partSnapshots{Parts: s}
	return s, nil
}

// Bucket returns the bucket the store uses.
func (s *Store) Bucket() string { return s.bucket }

// CreateBucket creates the store's bucket if it does not exist yet, for
// tests and development setups.
func (s *Store) CreateBucket(ctx context.Context) error {
	_, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.bucket)})
	if err != nil {
		var owned *types.BucketAlreadyOwnedByYou
		if errors.As(err, &owned) || awsapi.ErrorCode(err) == "BucketAlreadyOwnedByYou" {
			return nil
		}
		return s.fail(ctx, "create bucket", "", err)
	}
	return nil
}

// Get implements origin.Store.
func (s *Store) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	if err := record.ValidateKey(ns, key); err != nil {
		return record.Record{}, err
	}
	name := s.recordName(ns, key)
	in := &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(name)}
	if ifNewer != 0 {
		if e, ok := s.etags.get(name); ok && e.version <= ifNewer {
			// The object still has this ETag only if it still holds a
			// version at most ifNewer: then the answer is a bodiless 304.
			in.IfNoneMatch = aws.String(e.etag)
		}
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		switch {
		case isNotModified(err) && ctx.Err() == nil:
			return record.Record{}, fmt.Errorf("s3 get %s/%s: %w", ns, key, origin.ErrNotModified)
		case isNotFound(err) && ctx.Err() == nil:
			s.etags.forget(name)
			return record.Record{}, fmt.Errorf("s3 get %s/%s: %w", ns, key, origin.ErrNotFound)
		}
		return record.Record{}, s.fail(ctx, "get", name, err)
	}
	r, err := s.decodeRecord(ctx, ns, key, name, out.Body)
	if err != nil {
		return record.Record{}, err
	}
	s.etags.put(name, r.Version, aws.ToString(out.ETag))
	if ifNewer != 0 && r.Version <= ifNewer {
		return record.Record{}, fmt.Errorf("s3 get %s/%s: stored %s: %w", ns, key, r.Version, origin.ErrNotModified)
	}
	return r, nil
}

// decodeRecord reads and decodes a record object's body and closes it.
func (s *Store) decodeRecord(ctx context.Context, ns, key, name string, body io.ReadCloser) (record.Record, error) {
	b, err := readBody(body, record.MaxEncodedSize)
	if err != nil {
		if errors.Is(err, record.ErrCorrupt) {
			s.etags.forget(name)
			return record.Record{}, fmt.Errorf("s3 get %s/%s (s3://%s/%s): %w", ns, key, s.bucket, name, err)
		}
		return record.Record{}, s.fail(ctx, "get", name, err)
	}
	r, err := record.Unmarshal(b)
	if err == nil && (r.Namespace != ns || r.Key != key) {
		err = fmt.Errorf("%w: object holds %s/%s", record.ErrCorrupt, r.Namespace, r.Key)
	}
	if err != nil {
		s.etags.forget(name)
		if !errors.Is(err, record.ErrCorrupt) {
			err = fmt.Errorf("%w: %w", record.ErrCorrupt, err)
		}
		return record.Record{}, fmt.Errorf("s3 get %s/%s (s3://%s/%s): %w", ns, key, s.bucket, name, err)
	}
	return r, nil
}

// readBody reads at most limit bytes and closes r; a longer body is corrupt.
func readBody(r io.ReadCloser, limit int) ([]byte, error) {
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%w: object is over %d bytes", record.ErrCorrupt, limit)
	}
	return b, nil
}

// CompareAndSwap implements origin.Store.
func (s *Store) CompareAndSwap(ctx context.Context, rec record.Record, prev record.Version) error {
	if err := origin.CheckSwap(rec, prev); err != nil {
		return err
	}
	if err := s.checkNames(rec.Change()); err != nil {
		return err
	}
	body, err := record.Marshal(rec)
	if err != nil {
		return err
	}
	name := s.recordName(rec.Namespace, rec.Key)
	put := func(cond func(*s3.PutObjectInput)) error {
		in := &s3.PutObjectInput{
			Bucket:        aws.String(s.bucket),
			Key:           aws.String(name),
			Body:          bytes.NewReader(body),
			ContentLength: aws.Int64(int64(len(body))),
			ContentType:   aws.String("application/octet-stream"),
			Metadata:      map[string]string{metaVersion: rec.Version.String()},
		}
		cond(in)
		out, err := s.client.PutObject(ctx, in)
		if err != nil {
			return err
		}
		s.etags.put(name, rec.Version, aws.ToString(out.ETag))
		return nil
	}
	conflict := func(stored string) error {
		return fmt.Errorf("s3 swap %s/%s@%s: stored %s, expected %s: %w", rec.Namespace, rec.Key, rec.Version, stored, prev, origin.ErrConflict)
	}
	if prev == 0 {
		err := put(func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") })
		switch {
		case err == nil:
			return nil
		case isConflict(err) && ctx.Err() == nil:
			return conflict("a version")
		default:
			return s.fail(ctx, "swap", name, err)
		}
	}
	// Fast path: the ETag this Store last saw for version prev. If the
	// object changed since, the PUT fails and the HEAD below tells whether
	// that is a real conflict or just an outdated memory.
	if e, ok := s.etags.get(name); ok && e.version == prev {
		err := put(func(in *s3.PutObjectInput) { in.IfMatch = aws.String(e.etag) })
		switch {
		case err == nil:
			return nil
		case isConflict(err) && ctx.Err() == nil:
			s.etags.forgetETag(name, e.etag)
		default:
			return s.fail(ctx, "swap", name, err)
		}
	}
	cur, etag, err := s.headVersion(ctx, rec.Namespace, rec.Key, name)
	switch {
	case errors.Is(err, origin.ErrNotFound):
		return conflict("nothing")
	case err != nil:
		return err
	case cur != prev:
		return conflict(cur.String())
	}
	err = put(func(in *s3.PutObjectInput) { in.IfMatch = aws.String(etag) })
	switch {
	case err == nil:
		return nil
	case isConflict(err) && ctx.Err() == nil:
		s.etags.forgetETag(name, etag)
		return conflict("a newer version")
	default:
		return s.fail(ctx, "swap", name, err)
	}
}

// headVersion returns the version and ETag of the stored record of ns/key:
// from the object's metadata with a HEAD, or by reading the object if the
// metadata is missing (an object written by other tools).
func (s *Store) headVersion(ctx context.Context, ns, key, name string) (record.Version, string, error) {
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(name)})
	if err != nil {
		if isNotFound(err) && ctx.Err() == nil {
			return 0, "", fmt.Errorf("s3 head %s/%s: %w", ns, key, origin.ErrNotFound)
		}
		return 0, "", s.fail(ctx, "head", name, err)
	}
	if v, ok := parseVersion(head.Metadata[metaVersion]); ok && head.ETag != nil {
		return v, *head.ETag, nil
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(name)})
	if err != nil {
		if isNotFound(err) && ctx.Err() == nil {
			return 0, "", fmt.Errorf("s3 get %s/%s: %w", ns, key, origin.ErrNotFound)
		}
		return 0, "", s.fail(ctx, "get", name, err)
	}
	r, err := s.decodeRecord(ctx, ns, key, name, out.Body)
	if err != nil {
		return 0, "", err
	}
	return r.Version, aws.ToString(out.ETag), nil
}

// ServerTime returns the time in the Date header of a HEAD of the bucket;
// a refused HEAD (403 without s3:ListBucket) carries it too. It implements
// origin.Clock.
func (s *Store) ServerTime(ctx context.Context) (time.Time, error) {
	out, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	if out == nil {
		out = new(s3.HeadBucketOutput) // refused: the Date is in err
	}
	return awsapi.ServerTime(fmt.Sprintf("s3: bucket %q", s.bucket), out.ResultMetadata, err)
}
